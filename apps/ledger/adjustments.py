"""Manual journals with maker-checker: one staff member drafts, another approves or rejects.

Only an approved adjustment posts, as the `adjustment` entry whose reference is the
adjustment's id, so approving twice (or concurrently) posts once.
"""

from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone

from apps.ledger import rules
from apps.ledger.accounts import CHART, AccountKey
from apps.ledger.exceptions import AdjustmentInvalid, MakerCannotApprove
from apps.ledger.journal import Line, journal_post
from apps.ledger.models import Adjustment, AdjustmentLine, AdjustmentStatus, AdjustmentTransition


@dataclass(frozen=True)
class AdjustmentLineParams:
    account_type: str
    owner_id: int
    currency: str
    amount: int  # minor units, debit positive


def _lines_of(adjustment: Adjustment) -> list[Line]:
    return [
        Line(AccountKey(line.account_type, line.owner_id, line.currency.upper()), line.amount)
        for line in adjustment.lines.order_by("pk")
    ]


def _check_lines(lines: list[Line]) -> None:
    sums: dict[str, int] = {}
    if len(lines) < 2:
        raise AdjustmentInvalid("An adjustment needs at least two lines.")
    for line in lines:
        if line.account.type not in CHART or not line.amount:
            raise AdjustmentInvalid(f"Invalid line {line}.")
        sums[line.account.currency] = sums.get(line.account.currency, 0) + line.amount
    if any(sums.values()):
        raise AdjustmentInvalid(f"The lines do not balance: {sums}.")


@transaction.atomic
def adjustment_draft_create(
    *, livemode: bool, description: str, lines: list[AdjustmentLineParams], maker: str
) -> Adjustment:
    """A draft adjustment; its lines must balance per currency. Nothing is posted yet."""
    _check_lines([Line(AccountKey(p.account_type, p.owner_id, p.currency.upper()), p.amount) for p in lines])
    adjustment = Adjustment.objects.create(livemode=livemode, description=description, maker=maker)
    AdjustmentLine.objects.bulk_create(
        AdjustmentLine(
            adjustment=adjustment,
            account_type=p.account_type,
            owner_id=p.owner_id,
            currency=p.currency.upper(),
            amount=p.amount,
        )
        for p in lines
    )
    AdjustmentTransition.objects.create(adjustment=adjustment, source="", target=adjustment.status, by=maker)
    return adjustment


def _staff(identity: str) -> str:
    """The staff member behind an identity ("admin:alice" and "alice" are the same person)."""
    return identity.removeprefix("admin:")


def _lock(adjustment_id: int) -> Adjustment:
    return Adjustment.objects.select_for_update().get(pk=adjustment_id)


@transaction.atomic
def adjustment_approve(*, adjustment_id: int, checker: str) -> Adjustment:
    """Approves and posts a draft. The checker must not be its maker (maker-checker)."""
    adjustment = _lock(adjustment_id)
    if adjustment.status != AdjustmentStatus.DRAFT:
        return adjustment
    if _staff(checker) == _staff(adjustment.maker):
        raise MakerCannotApprove(f"{checker} drafted {adjustment.public_id}; another staff member must approve it.")
    lines = _lines_of(adjustment)
    _check_lines(lines)
    adjustment.approve(checker=checker, at=timezone.now())
    posted = journal_post(
        event_type=rules.ADJUSTMENT,
        reference=adjustment.public_id,
        livemode=adjustment.livemode,
        lines=lines,
        description=adjustment.description,
    )
    adjustment.entry_id = posted.entry_id
    adjustment.save()
    AdjustmentTransition.objects.create(
        adjustment=adjustment, source=AdjustmentStatus.DRAFT, target=adjustment.status, by=checker
    )
    return adjustment


@transaction.atomic
def adjustment_reject(*, adjustment_id: int, checker: str) -> Adjustment:
    adjustment = _lock(adjustment_id)
    if adjustment.status != AdjustmentStatus.DRAFT:
        return adjustment
    adjustment.reject(checker=checker, at=timezone.now())
    adjustment.save()
    AdjustmentTransition.objects.create(
        adjustment=adjustment, source=AdjustmentStatus.DRAFT, target=adjustment.status, by=checker
    )
    return adjustment
