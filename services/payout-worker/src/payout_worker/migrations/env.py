from aftersales_shared.migrations import run
from payout_worker import models  # noqa: F401  (registers the tables)
from payout_worker.config import Settings
from sqlmodel import SQLModel

run(SQLModel.metadata, Settings().sqlalchemy_url)
