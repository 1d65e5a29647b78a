"""One error type for everything an operator can get wrong or the kernel can refuse.

Messages say what we tried (verb), on what (object), why (cause) and what to do (hint):
"couldn't attach XDP program to eth1 (driver mode): Operation not supported; try --mode skb".
"""

from __future__ import annotations


class XgError(Exception):
    def __init__(self, verb: str, obj: str, cause: str, hint: str = "") -> None:
        self.verb, self.obj, self.cause, self.hint = verb, obj, cause, hint
        msg = f"couldn't {verb} {obj}: {cause}"
        if hint:
            msg += f"; {hint}"
        super().__init__(msg)
