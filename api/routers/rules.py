"""Rules one at a time, in order (first match wins). Each change is one atomic
read-modify-write of the policy under the controller's lock."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Response, status

from xdpgate.control.controller import NotFound
from xdpgate.control.policy import Policy, PolicyError, Rule

from ..deps import Admin, ControllerDep, IfMatch, Placement, PlacementDep, Reader, RuleName
from ..schemas import Changed, RuleCreate, RulePublic, RuleUpdate

router = APIRouter(prefix="/rules", tags=["rules"])


class RuleExists(Exception):
    pass


def _index(rules: list[Rule], name: str) -> int:
    for i, r in enumerate(rules):
        if r.name == name:
            return i
    raise NotFound(f"no rule named {name!r}")


def _slot(rules: list[Rule], place: Placement, default: int) -> int:
    """The index a placed rule goes to in `rules` (which doesn't hold it)."""
    if place.position is not None:
        if place.position > len(rules):
            raise PolicyError([{"loc": ["query", "position"],
                                "msg": f"position {place.position} is past the end "
                                       f"(there are {len(rules)} other rules)"}])
        return place.position
    for ref, off, key in ((place.before, 0, "before"), (place.after, 1, "after")):
        if ref is not None:
            try:
                return _index(rules, ref) + off
            except NotFound:
                raise PolicyError([{"loc": ["query", key],
                                    "msg": f"no rule named {ref!r}"}]) from None
    return default


def _public(rules: list[Rule], name: str) -> RulePublic:
    i = _index(rules, name)
    return RulePublic.model_validate({**rules[i].model_dump(), "position": i})


def _changed(response: Response, etag: str) -> None:
    response.headers["ETag"] = etag


@router.get("", response_model=list[RulePublic], response_model_exclude_none=True)
def list_rules(ctl: ControllerDep, _: Reader, response: Response) -> list[RulePublic]:
    """The rules in order, with their positions."""
    policy, etag = ctl.get_policy()
    _changed(response, etag)
    return [RulePublic.model_validate({**r.model_dump(), "position": i})
            for i, r in enumerate(policy.rules)]


@router.post("", response_model=RulePublic, response_model_exclude_none=True,
             status_code=status.HTTP_201_CREATED,
             responses={409: {"description": "a rule of that name exists"}})
def create_rule(rule: RuleCreate, ctl: ControllerDep, actor: Admin, place: PlacementDep,
                if_match: IfMatch, response: Response) -> RulePublic:
    """Add a rule: last, or at ?position=N, ?before=RULE or ?after=RULE."""
    new = Rule.model_validate(rule.model_dump())
    holder: list[Rule] = []

    def edit(p: Policy) -> Policy:
        if any(r.name == new.name for r in p.rules):
            raise RuleExists(new.name)
        p.rules.insert(_slot(p.rules, place, len(p.rules)), new)
        holder[:] = p.rules
        return p

    try:
        etag = ctl.edit_policy(edit, actor=actor, what=f"rule.add {new.name}", if_match=if_match)
    except RuleExists:
        raise HTTPException(status.HTTP_409_CONFLICT,
                            f"a rule named {new.name!r} exists; PUT /rules/{new.name} "
                            "replaces it") from None
    _changed(response, etag)
    return _public(holder, new.name)


@router.get("/{name}", response_model=RulePublic, response_model_exclude_none=True)
def get_rule(name: RuleName, ctl: ControllerDep, _: Reader) -> RulePublic:
    """One rule and its position."""
    return _public(ctl.get_policy()[0].rules, name)


@router.put("/{name}", response_model=RulePublic, response_model_exclude_none=True)
def replace_rule(name: RuleName, rule: RuleUpdate, ctl: ControllerDep, actor: Admin,
                 place: PlacementDep, if_match: IfMatch, response: Response) -> RulePublic:
    """Replace a rule in place (or move it with ?position/?before/?after); 404 if unknown."""
    new = Rule.model_validate(rule.model_dump())
    holder: list[Rule] = []

    def edit(p: Policy) -> Policy:
        i = _index(p.rules, name)
        del p.rules[i]
        p.rules.insert(_slot(p.rules, place, i), new)
        holder[:] = p.rules
        return p

    etag = ctl.edit_policy(edit, actor=actor, what=f"rule.put {name}", if_match=if_match)
    _changed(response, etag)
    return _public(holder, new.name)


@router.delete("/{name}", response_model=Changed)
def delete_rule(name: RuleName, ctl: ControllerDep, actor: Admin, if_match: IfMatch,
                response: Response) -> Changed:
    """Remove a rule; 404 if unknown."""

    def edit(p: Policy) -> Policy:
        del p.rules[_index(p.rules, name)]
        return p

    etag = ctl.edit_policy(edit, actor=actor, what=f"rule.delete {name}", if_match=if_match)
    _changed(response, etag)
    return Changed(etag=etag)
