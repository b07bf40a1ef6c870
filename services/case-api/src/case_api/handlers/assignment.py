"""Who works a case: the console's "take a case" (领取) and ops' assigning.

The assignee is workbench bookkeeping, not a business event: a change bumps the case's version and
`updated_at` (so the change feed carries it) and writes an `assigned` timeline entry, and queues no event.
Two people taking the same case at once: the case row is locked, the first wins, and the second, a support
person, finds it taken by someone else and gets a 409 `already_assigned` (ops may reassign on purpose).
"""

from __future__ import annotations

from aftersales_shared.auth import Role
from aftersales_shared.ids import new_id
from aftersales_shared.problems import Problem, conflict

from .. import repository as repo
from ..models import Case, CaseEvent
from .cases import check_version
from .context import Context


async def assign(ctx: Context, case_id: str, assignee: str | None, expected_version: int | None) -> Case:
    """Set the case's assignee (None releases it): support for themself only, ops for anyone."""
    ctx.principal.require(Role.support, Role.ops)
    row = await repo.get_case(ctx.session, ctx.principal, case_id, for_update=True)
    check_version(row, expected_version)
    me = ctx.principal.name
    if not ctx.principal.has_any([Role.ops]):
        if assignee not in (None, me):
            raise Problem(
                403,
                "forbidden",
                "Forbidden",
                "support may take a case only for themself; ops assigns others",
                message_zh="客服只能为自己领取工单;指派给他人需要运营权限。",
                message_en="Support can take a case only for themselves; assigning others takes ops.",
            )
        if row.assignee not in (None, me):
            raise conflict(
                "already_assigned",
                f"the case is taken by {row.assignee}",
                assignee=row.assignee,
                current_version=row.version,
                message_zh=f"该工单已由 {row.assignee} 领取。",
                message_en=f"This case has already been taken by {row.assignee}.",
            )
    if row.assignee == assignee:
        return row  # already so: nothing changes, the version stays
    ctx.session.add(
        CaseEvent(
            id=new_id("cev"),
            case_id=row.id,
            action="assigned",
            actor=me,
            from_status=row.status,
            to_status=row.status,
            data={"assignee": assignee, "previous_assignee": row.assignee},
            at=ctx.now,
        )
    )
    row.assignee = assignee
    row.version += 1
    row.updated_at = ctx.now
    ctx.session.add(row)
    await ctx.session.flush()
    return row
