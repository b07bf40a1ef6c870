from aftersales_shared.migrations import run
from sqlmodel import SQLModel

from payout_worker import models  # noqa: F401  (registers the tables)
from payout_worker.config import Settings

run(SQLModel.metadata, Settings().sqlalchemy_url)
