"""The chart of accounts: each account type's normal side, whether it may go negative, and
whether it is hot (its balance spread over slots, docs/ledger.md)."""

from dataclasses import dataclass

from django.conf import settings

from apps.ledger.models import PLATFORM_OWNER, AccountType, NormalSide


@dataclass(frozen=True)
class AccountKey:
    """Names an account within a book (live or test): type, owner id, ISO currency code (upper)."""

    type: str
    owner_id: int
    currency: str


@dataclass(frozen=True)
class AccountRule:
    normal_side: str
    may_go_negative: bool
    hot: bool


CHART: dict[str, AccountRule] = {
    # What paysys owes merchants: never negative, so a decrease locks the account.
    AccountType.MERCHANT_PENDING: AccountRule(NormalSide.CREDIT, may_go_negative=False, hot=True),
    AccountType.MERCHANT_AVAILABLE: AccountRule(NormalSide.CREDIT, may_go_negative=False, hot=False),
    AccountType.USER_BALANCE: AccountRule(NormalSide.CREDIT, may_go_negative=False, hot=False),
    # What channels owe paysys; refunds may run ahead of the channel's settlement.
    AccountType.CHANNEL_CLEARING: AccountRule(NormalSide.DEBIT, may_go_negative=True, hot=True),
    AccountType.CHANNEL_FEE_EXPENSE: AccountRule(NormalSide.DEBIT, may_go_negative=True, hot=True),
    AccountType.PLATFORM_FEE_REVENUE: AccountRule(NormalSide.CREDIT, may_go_negative=True, hot=True),
    AccountType.MARKETING_EXPENSE: AccountRule(NormalSide.DEBIT, may_go_negative=True, hot=True),
    AccountType.SUSPENSE: AccountRule(NormalSide.DEBIT, may_go_negative=True, hot=False),
    AccountType.BANK: AccountRule(NormalSide.DEBIT, may_go_negative=True, hot=False),
}


def slot_count_for(account_type: str) -> int:
    return settings.PAYSYS_LEDGER_HOT_SLOTS if CHART[account_type].hot else 1


def merchant_pending(merchant_id: int, currency: str) -> AccountKey:
    return AccountKey(AccountType.MERCHANT_PENDING, merchant_id, currency)


def merchant_available(merchant_id: int, currency: str) -> AccountKey:
    return AccountKey(AccountType.MERCHANT_AVAILABLE, merchant_id, currency)


def channel_clearing(channel_account_id: int, currency: str) -> AccountKey:
    return AccountKey(AccountType.CHANNEL_CLEARING, channel_account_id, currency)


def channel_fee_expense(channel_account_id: int, currency: str) -> AccountKey:
    return AccountKey(AccountType.CHANNEL_FEE_EXPENSE, channel_account_id, currency)


def platform_fee_revenue(currency: str) -> AccountKey:
    return AccountKey(AccountType.PLATFORM_FEE_REVENUE, PLATFORM_OWNER, currency)


def marketing_expense(currency: str) -> AccountKey:
    return AccountKey(AccountType.MARKETING_EXPENSE, PLATFORM_OWNER, currency)


def bank(currency: str) -> AccountKey:
    return AccountKey(AccountType.BANK, PLATFORM_OWNER, currency)
