"""What each command does, one module per aggregate: orders, cases, cashback.

Handlers lock, check, change state, write the timeline and queue events in the caller's transaction. They
flush; the edge commits. A newcomer reads `cases.act` to see what happens when a case moves.
"""

from .assignment import assign
from .cases import SOURCE, act, locked_case, open_case, record, sign_replacement, touch
from .cashback import cancel_task, create_cashback, decide_cashback, locked_task, request_clawback
from .context import Context
from .orders import domain_order, load_domain_order, upsert_order

__all__ = [
    "SOURCE",
    "Context",
    "act",
    "assign",
    "cancel_task",
    "create_cashback",
    "decide_cashback",
    "domain_order",
    "load_domain_order",
    "locked_case",
    "locked_task",
    "open_case",
    "record",
    "request_clawback",
    "sign_replacement",
    "touch",
    "upsert_order",
]
