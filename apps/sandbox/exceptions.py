"""The sandbox's errors: Alipay's own codes, answered inside a signed response node."""


class AlipayGatewayError(Exception):
    """An answer other than `10000`: `code` (40002, 40004…) with Alipay's `sub_code`/`sub_msg`."""

    MESSAGES = {
        "20000": "Service Currently Unavailable",
        "40001": "Missing Required Arguments",
        "40002": "Invalid Arguments",
        "40004": "Business Failed",
    }

    def __init__(self, code: str, sub_code: str, sub_msg: str):
        super().__init__(f"{code} {sub_code}: {sub_msg}")
        self.code = code
        self.sub_code = sub_code
        self.sub_msg = sub_msg

    def node(self) -> dict:
        return {
            "code": self.code,
            "msg": self.MESSAGES.get(self.code, "Business Failed"),
            "sub_code": self.sub_code,
            "sub_msg": self.sub_msg,
        }


def business_error(sub_code: str, sub_msg: str) -> AlipayGatewayError:
    return AlipayGatewayError("40004", sub_code, sub_msg)
