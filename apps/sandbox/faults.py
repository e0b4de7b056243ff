"""Fault injection: what the sandbox consults before it answers, notifies or writes a bill.

`fault_take` fires a matching fault at most `remaining` times, atomically, so concurrent
requests never fire one more often than it was set to.
"""

from django.db import transaction
from django.db.models import F, Q

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


def fault_kinds_armed(*, provider: str, merchant_ref: str, out_trade_no: str = "") -> frozenset[str]:
    """The kinds of fault that could fire for the payment now: one read, so that a request can
    skip the locking `fault_take` of every kind that is not armed (the usual case).

    The provider's enabled faults are few (none, most of the time), so the scope rule of
    `faults_in_scope` is applied to them here rather than built into a query on every call.
    """
    rows = SandboxFault.objects.filter(provider=provider, enabled=True).values_list(
        "kind", "merchant_ref", "out_trade_no", "remaining"
    )
    return frozenset(
        kind
        for kind, ref, order, remaining in rows
        if ref in ("", merchant_ref) and order in ("", out_trade_no) and (remaining is None or remaining > 0)
    )


def faults_in_scope(faults, *, merchant_ref: str, out_trade_no: str):
    """The faults among `faults` whose scope covers the merchant and order and that can still fire
    (`fault_kinds_armed` applies the same rule in Python)."""
    return (
        faults.filter(Q(merchant_ref="") | Q(merchant_ref=merchant_ref))
        .filter(Q(out_trade_no="") | Q(out_trade_no=out_trade_no))
        .filter(Q(remaining__isnull=True) | Q(remaining__gt=0))
    )


def fault_take(
    *, provider: str, kind: str, merchant_ref: str, out_trade_no: str = "", armed: frozenset[str] | None = None
) -> SandboxFault | None:
    """The most specific enabled fault of this kind for the payment, consumed once; else None.

    `armed` (from `fault_kinds_armed`, read earlier in the same request) skips the query when the
    kind was not armed then.
    """
    if armed is not None and kind not in armed:
        return None
    with transaction.atomic():
        fault = (
            faults_in_scope(
                SandboxFault.objects.select_for_update(skip_locked=True).filter(
                    provider=provider, kind=kind, enabled=True
                ),
                merchant_ref=merchant_ref,
                out_trade_no=out_trade_no,
            )
            .order_by("-out_trade_no", "-merchant_ref", "id")
            .first()
        )
        if fault is None:
            return None
        changes = {"fired": F("fired") + 1}
        if fault.remaining is not None:
            changes["remaining"] = F("remaining") - 1
        SandboxFault.objects.filter(pk=fault.pk).update(**changes)
        return fault


def fault_active(*, provider: str, kind: str, merchant_ref: str, out_trade_no: str = "") -> bool:
    """Whether a fault would fire, without consuming it (for bill generation over many trades)."""
    return faults_in_scope(
        SandboxFault.objects.filter(provider=provider, kind=kind, enabled=True),
        merchant_ref=merchant_ref,
        out_trade_no=out_trade_no,
    ).exists()
