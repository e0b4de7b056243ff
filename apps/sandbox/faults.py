"""Fault injection: what the sandbox consults before it answers, notifies or writes a bill.

`fault_take` fires a matching fault at most `remaining` times, atomically, so concurrent
requests never fire one more often than it was set to. A fault limited to some operations
(`params.operations`, e.g. ERROR_5XX on `["create"]`) is matched, and so spent, only by those.
"""

from django.db import connection, transaction
from django.db.models import F, Q, QuerySet

from apps.sandbox.models import FaultKind, SandboxFault


def fault_set(
    *,
    provider: str,
    kind: str,
    merchant_ref: str = "",
    out_trade_no: str = "",
    params: dict | None = None,
    remaining: int | None = None,
) -> SandboxFault:
    if kind not in FaultKind.values:
        raise ValueError(f"unknown fault kind {kind!r}")
    return SandboxFault.objects.create(
        provider=provider,
        kind=kind,
        merchant_ref=merchant_ref,
        out_trade_no=out_trade_no,
        params=params or {},
        remaining=remaining,
    )


def fault_clear(*, provider: str | None = None) -> int:
    qs = SandboxFault.objects.filter(enabled=True)
    if provider:
        qs = qs.filter(provider=provider)
    return qs.update(enabled=False)


# A provider's enabled faults as (kind, merchant_ref, out_trade_no, remaining): few (none, most of
# the time), so the scope rule of `_matching` is applied to them in Python (`armed_kinds`) rather
# than built into a query on every call.
_SCOPE = "kind, merchant_ref, out_trade_no, remaining"
_ENABLED = f"FROM {SandboxFault._meta.db_table} WHERE provider = %s AND enabled"
ENABLED_FAULTS_SQL = f"SELECT {_SCOPE} {_ENABLED}"
# The same rows as one JSON array of arrays, for a statement that reads them beside something else.
ENABLED_FAULTS_JSON_SQL = f"SELECT coalesce(json_agg(json_build_array({_SCOPE})), '[]') {_ENABLED}"


def armed_kinds(enabled: list, *, merchant_ref: str, out_trade_no: str = "") -> frozenset[str]:
    """The kinds among `enabled` (rows of ENABLED_FAULTS_SQL) that could fire for the payment now
    (operations aside: a kind is armed if any of its faults could fire), so that a request can
    skip the locking `fault_take` of every kind that is not armed (the usual case)."""
    return frozenset(
        kind
        for kind, ref, order, remaining in enabled
        if ref in ("", merchant_ref) and order in ("", out_trade_no) and (remaining is None or remaining > 0)
    )


def fault_kinds_armed(*, provider: str, merchant_ref: str, out_trade_no: str = "") -> frozenset[str]:
    """`armed_kinds` of the provider's enabled faults, in one fixed statement."""
    with connection.cursor() as cursor:
        cursor.execute(ENABLED_FAULTS_SQL, [provider])
        enabled = cursor.fetchall()
    return armed_kinds(enabled, merchant_ref=merchant_ref, out_trade_no=out_trade_no)


def _matching(
    *, provider: str, kind: str, merchant_ref: str, out_trade_no: str, operation: str | None
) -> QuerySet[SandboxFault]:
    """Enabled faults of this kind that apply to the account, the payment and the operation."""
    faults = (
        SandboxFault.objects.filter(provider=provider, kind=kind, enabled=True)
        .filter(Q(merchant_ref="") | Q(merchant_ref=merchant_ref))
        .filter(Q(out_trade_no="") | Q(out_trade_no=out_trade_no))
        .filter(Q(remaining__isnull=True) | Q(remaining__gt=0))
    )
    if operation is not None:  # no `operations` (or an empty list) means every operation
        faults = faults.filter(
            Q(params__operations__isnull=True)
            | Q(params__operations=None)
            | Q(params__operations=[])
            | Q(params__operations__contains=[operation])
        )
    return faults


def fault_take(
    *,
    provider: str,
    kind: str,
    merchant_ref: str,
    out_trade_no: str = "",
    operation: str | None = None,
    armed: frozenset[str] | None = None,
) -> SandboxFault | None:
    """The most specific enabled fault of this kind for the payment (and `operation`, when the
    caller names one), consumed once; else None.

    `armed` (from `fault_kinds_armed`, read earlier in the same request) skips the query when the
    kind was not armed then.
    """
    if armed is not None and kind not in armed:
        return None
    matching = _matching(
        provider=provider, kind=kind, merchant_ref=merchant_ref, out_trade_no=out_trade_no, operation=operation
    )
    with transaction.atomic():
        fault = matching.select_for_update(skip_locked=True).order_by("-out_trade_no", "-merchant_ref", "id").first()
        if fault is None:
            return None
        changes = {"fired": F("fired") + 1}
        if fault.remaining is not None:
            changes["remaining"] = F("remaining") - 1
        SandboxFault.objects.filter(pk=fault.pk).update(**changes)
        return fault


def fault_active(*, provider: str, kind: str, merchant_ref: str, out_trade_no: str = "") -> bool:
    """Whether a fault would fire, without consuming it (for bill generation over many trades)."""
    return _matching(
        provider=provider, kind=kind, merchant_ref=merchant_ref, out_trade_no=out_trade_no, operation=None
    ).exists()
