from apps.core.errors import InvalidRequest


class OrderMismatch(InvalidRequest):
    default_code = "order_no_used"


class OrderNotPayable(InvalidRequest):
    default_code = "order_not_payable"
