"""The controller's status and the interfaces it filters on."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, status

from ..deps import Admin, ControllerDep, Reader
from ..schemas import IFNAME_RE, InterfaceCreate, InterfacePublic, StatusPublic

router = APIRouter(tags=["status"])
IfName = Annotated[str, Path(pattern=IFNAME_RE)]


@router.get("/status", response_model=StatusPublic)
def get_status(ctl: ControllerDep, _: Reader) -> dict:
    """Version, uptime, policy version and ETag, and the interfaces with their XDP mode."""
    return ctl.status()


@router.get("/interfaces", response_model=list[InterfacePublic])
def list_interfaces(ctl: ControllerDep, _: Reader) -> list[dict]:
    """The interfaces xdpgate is attached to."""
    return ctl.interfaces()


@router.post("/interfaces", response_model=InterfacePublic, status_code=status.HTTP_201_CREATED)
def attach_interface(body: InterfaceCreate, ctl: ControllerDep, actor: Admin) -> dict:
    """Attach the filter to an interface (mode native, falling back to skb with a warning)."""
    return ctl.attach_interface(body.name, body.mode, actor=actor)


@router.delete("/interfaces/{name}", status_code=status.HTTP_204_NO_CONTENT,
               response_model=None)
def detach_interface(name: IfName, ctl: ControllerDep, actor: Admin) -> None:
    """Detach the filter from an interface (404 if it isn't attached there)."""
    ctl.detach_interface(name, actor=actor)
