"""Staff pages: residents and households, returnees, the site policy.

    /registry/sites/{site}/people              search and filter; add a person
    /registry/sites/{site}/people/{id}         edit; returnee; observation end (with a reason);
                                               move out; new renter; passes (revoke, reissue)
    /registry/sites/{site}/policy              the site policy form (pushed to the gates)

Every change goes through sync.server.people / issuing / site_policy, which
write the audit record with the logged-in staff member's name.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Annotated
from urllib.parse import urlencode

from fastapi import Form, Request
from fastapi.responses import RedirectResponse

from sync.server import issuing, people, site_policy
from sync.server.registry import RegistryError
from sync.server.web import StaffPage, i18n, page_router, render, site_guard
from sync.server.web.core import PREFIX, add_site_nav

CHANGERS = ("admin", "worker")
router = page_router()

i18n.register({
    "nav.people": ("居民", "Residents"),
    "nav.imports": ("导入", "Import"),
    "nav.passes": ("通行证", "Passes"),
    "nav.policy": ("防控规则", "Site policy"),
    "people.title": ("居民登记", "Residents"),
    "people.count": ("共 {total} 人", "{total} people"),
    "people.building": ("楼号", "Building"),
    "people.unit": ("单元", "Unit"),
    "people.room": ("门牌号", "Room"),
    "people.name": ("姓名", "Name"),
    "people.phone": ("联系电话", "Phone"),
    "people.kind": ("人员类别", "Kind"),
    "people.status": ("状态", "Status"),
    "people.observation": ("居家观察", "Home observation"),
    "people.observation_until": ("观察截止日期", "Observation ends"),
    "people.returnee": ("返京人员", "Returnee"),
    "people.arrival_date": ("返京日期", "Arrival date"),
    "people.origin": ("来源地", "Came from"),
    "people.contact": ("联系人/方式", "Contact"),
    "people.landlord": ("房东", "Landlord"),
    "people.moved_in": ("入住日期", "Moved in"),
    "people.all": ("全部", "All"),
    "people.filter": ("筛选", "Filter"),
    "people.under": ("观察中", "Under observation"),
    "people.returnees": ("返京人员", "Returnees"),
    "people.moved_out": ("已搬离", "Moved out"),
    "people.active": ("在住", "Living here"),
    "people.any_status": ("全部状态", "Any status"),
    "people.add": ("登记居民", "Add a person"),
    "people.saved": ("已保存", "Saved"),
    "people.unchanged": ("没有变化", "Nothing changed"),
    "people.edit": ("修改信息", "Edit"),
    "people.household": ("同户人员", "Household"),
    "people.add_renter": ("登记新租户（住在本户）", "Add a new renter (in this household)"),
    "people.register_returnee": ("登记返京", "Register a return"),
    "people.returnee_note": ("自返京之日起居家观察14天（至返京日期后第14天）",
                             "Home observation for 14 days from the arrival date (through arrival + 14 days)"),
    "people.change_end": ("修改观察截止日期", "Change the end of observation"),
    "people.reason": ("修改原因（必填）", "Reason (required)"),
    "people.end_now": ("留空表示解除观察", "Leave empty to end the observation"),
    "people.move_out": ("登记搬离", "Mark as moved out"),
    "people.passes": ("通行证", "Passes"),
    "people.pass_id": ("编号", "Pass id"),
    "people.valid": ("有效期", "Valid"),
    "people.revoked": ("已作废", "Revoked"),
    "people.revoke": ("挂失作废", "Revoke (lost)"),
    "people.reissue": ("补办（作废旧证）", "Reissue (revokes the old)"),
    "people.issue_household": ("为全户 {count} 人发放", "Issue to the whole household ({count})"),
    "people.issue": ("发放通行证", "Issue a pass"),
    "people.days": ("有效天数", "Days valid"),
    "people.print": ("打印", "Print"),
    "people.none": ("没有符合条件的居民", "Nobody matches"),
    "people.issue_filtered": ("为筛选出的 {total} 人发放通行证", "Issue passes to the {total} people shown"),
    "kind.resident": ("居民", "Resident"),
    "kind.tenant": ("租户", "Tenant"),
    "kind.staff": ("工作人员", "Staff"),
    "kind.volunteer": ("志愿者", "Volunteer"),
    "status.active": ("在住", "Living here"),
    "status.moved_out": ("已搬离", "Moved out"),
    "policy.title": ("小区防控规则", "Site policy"),
    "policy.version": ("当前第 {version} 版", "Version {version} in force"),
    "policy.never": ("尚未发布（闸机使用本机默认规则）", "Never published (gates use their default)"),
    "policy.visitor_mode": ("外来人员", "Visitors"),
    "policy.visitor_register": ("测温登记后可进入（2月1日规定）", "May enter after temperature and registration (1 Feb rule)"),
    "policy.visitor_deny": ("原则上不得进入，特殊情况登记备案（2月9日规定）", "Refused unless a filed special case (9 Feb rule)"),
    "policy.threshold_c": ("发热阈值 (°C)", "Fever threshold (°C)"),
    "policy.offset_c": ("额温补偿 (°C)", "Skin offset (°C)"),
    "policy.config_default": ("留空则使用闸机配置", "Empty: each gate's own config"),
    "policy.enforcement": ("执行方式", "Enforcement"),
    "policy.hard": ("严格：发热或设备故障不开闸（值守人员可放行并记录）", "Hard: fever or a fault keeps the gate shut (guard may override)"),
    "policy.soft": ("宽松：开闸并报警", "Soft: open, flag and alert"),
    "policy.posted_rules": ("门口公示的规定（每行一条）", "Rules posted at the gate (one per line)"),
    "policy.duty_person": ("责任人", "Person responsible"),
    "policy.duty_phone": ("值守电话", "Duty phone"),
    "policy.mask_names": ("打印通行证时隐藏姓名（如 张*）", "Mask names on printed passes (e.g. 张*)"),
    "policy.publish": ("发布到各闸机", "Publish to the gates"),
    "policy.published": ("已发布第 {version} 版，闸机下次同步时生效", "Version {version} published; gates apply it on their next sync"),
    "policy.errors": ("请改正标红的项目", "Please correct the fields marked in red"),
    "common.back": ("返回", "Back"),
})


def db_of(request: Request):
    return request.app.state.db


for _board in ("people", "imports", "passes", "policy"):
    add_site_nav(_board, f"nav.{_board}")


def _date(value: str) -> date | None:
    value = (value or "").strip()
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise RegistryError(f"“{value}” 不是日期 / not a date (YYYY-MM-DD)") from None


def _back(site_id: str, path: str, **query) -> RedirectResponse:
    q = urlencode({k: v for k, v in query.items() if v not in (None, "")})
    return RedirectResponse(f"{PREFIX}/sites/{site_id}/{path}" + (f"?{q}" if q else ""), status_code=303)


@router.get("/sites/{site_id}/people")
def people_list(request: Request, site_id: str, staff: StaffPage, building: str = "", name: str = "",
                phone: str = "", kind: str = "", observation: str = "", status: str = "active", page: int = 1,
                message: str = "", problem: str = ""):
    site_guard(staff, site_id, change=False)
    filters = people.Filters(building=building[:16], name=name[:64], phone=phone[:32],
                             kind=kind if kind in people.KINDS else "",
                             observation=observation if observation in ("under", "returnee") else "",
                             status=status if status in ("", *people.STATUSES) else "active")
    page = max(1, page)
    rows, total = people.search(db_of(request), site_id, filters, limit=100, offset=(page - 1) * 100)
    return render(request, "people/list.html", site=site_id, board="people", rows=rows, total=total,
                  filters=filters, buildings=people.buildings(db_of(request), site_id), kinds=people.KINDS,
                  page=page, pages=max(1, -(-total // 100)), address=people.address, message=message,
                  problem=problem, can_change=staff.can_change(site_id), query=request.url.query)


@router.post("/sites/{site_id}/people")
def people_add(request: Request, site_id: str, staff: StaffPage, name: Annotated[str, Form(max_length=64)] = "",
               building: Annotated[str, Form(max_length=32)] = "", unit: Annotated[str, Form(max_length=32)] = "",
               room: Annotated[str, Form(max_length=32)] = "", phone: Annotated[str, Form(max_length=32)] = "",
               kind: Annotated[str, Form(max_length=16)] = "resident"):
    site_guard(staff, site_id, change=True, roles=CHANGERS)
    try:
        saved = people.save_one(db_of(request), site_id, {"name": name, "building": building, "unit": unit,
                                                          "room": room, "phone": phone, "kind": kind},
                                by=staff.name, action="person.add")
    except RegistryError as exc:
        return _back(site_id, "people", problem=str(exc))
    return _back(site_id, f"people/{saved.person_id}", message="people.saved")


def _person_or_404(request: Request, site_id: str, person_id: str) -> dict:
    from fastapi import HTTPException

    person = people.get_person(db_of(request), site_id, person_id)
    if person is None:
        raise HTTPException(404, {"error": "not_found", "detail": f"no person {person_id} at {site_id}"})
    return person


@router.get("/sites/{site_id}/people/{person_id}")
def person_page(request: Request, site_id: str, person_id: str, staff: StaffPage, message: str = "",
                problem: str = ""):
    site_guard(staff, site_id, change=False)
    person = _person_or_404(request, site_id, person_id)
    db = db_of(request)
    landlord = people.get_person(db, site_id, person["landlord_id"]) if person.get("landlord_id") else None
    return render(request, "people/person.html", site=site_id, board="people", person=person,
                  household=people.household(db, site_id, person_id), landlord=landlord,
                  passes=issuing.passes_of(db, site_id, person_id), address=people.address, kinds=people.KINDS,
                  message=message, problem=problem, can_change=staff.can_change(site_id),
                  issuing_ready=request.app.state.issuer_passphrase is not None, china=issuing.CHINA_TZ,
                  one_second=timedelta(seconds=1))


@router.post("/sites/{site_id}/people/{person_id}")
def person_edit(request: Request, site_id: str, person_id: str, staff: StaffPage,
                name: Annotated[str, Form(max_length=64)] = "", building: Annotated[str, Form(max_length=32)] = "",
                unit: Annotated[str, Form(max_length=32)] = "", room: Annotated[str, Form(max_length=32)] = "",
                phone: Annotated[str, Form(max_length=32)] = "", kind: Annotated[str, Form(max_length=16)] = "resident"):
    site_guard(staff, site_id, change=True, roles=CHANGERS)
    _person_or_404(request, site_id, person_id)
    try:
        saved = people.save_one(db_of(request), site_id, {"name": name, "building": building, "unit": unit,
                                                          "room": room, "phone": phone, "kind": kind},
                                by=staff.name, person_id=person_id, action="person.edit")
    except RegistryError as exc:
        return _back(site_id, f"people/{person_id}", problem=str(exc))
    return _back(site_id, f"people/{person_id}", message="people.saved" if saved.changed else "people.unchanged")


@router.post("/sites/{site_id}/people/{person_id}/returnee")
def person_returnee(request: Request, site_id: str, person_id: str, staff: StaffPage,
                    arrival_date: Annotated[str, Form(max_length=10)] = "",
                    origin: Annotated[str, Form(max_length=64)] = "", contact: Annotated[str, Form(max_length=64)] = ""):
    site_guard(staff, site_id, change=True, roles=CHANGERS)
    _person_or_404(request, site_id, person_id)
    try:
        arrival = _date(arrival_date)
        if arrival is None:
            raise RegistryError("返京日期必填 / the arrival date is required")
        people.register_returnee(db_of(request), site_id, person_id, arrival_date=arrival, origin=origin,
                                 contact=contact, by=staff.name)
    except RegistryError as exc:
        return _back(site_id, f"people/{person_id}", problem=str(exc))
    return _back(site_id, f"people/{person_id}", message="people.saved")


@router.post("/sites/{site_id}/people/{person_id}/observation")
def person_observation(request: Request, site_id: str, person_id: str, staff: StaffPage,
                       until: Annotated[str, Form(max_length=10)] = "", reason: Annotated[str, Form(max_length=200)] = ""):
    site_guard(staff, site_id, change=True, roles=CHANGERS)
    _person_or_404(request, site_id, person_id)
    try:
        people.set_observation_end(db_of(request), site_id, person_id, _date(until), reason=reason, by=staff.name)
    except RegistryError as exc:
        return _back(site_id, f"people/{person_id}", problem=str(exc))
    return _back(site_id, f"people/{person_id}", message="people.saved")


@router.post("/sites/{site_id}/people/{person_id}/move-out")
def person_move_out(request: Request, site_id: str, person_id: str, staff: StaffPage):
    site_guard(staff, site_id, change=True, roles=CHANGERS)
    _person_or_404(request, site_id, person_id)
    db = db_of(request)
    people.move_out(db, site_id, person_id, by=staff.name)
    issuing.revoke_person(db, site_id, person_id, reason="moved out", by=staff.name)
    return _back(site_id, f"people/{person_id}", message="people.saved")


@router.post("/sites/{site_id}/people/{person_id}/renter")
def person_renter(request: Request, site_id: str, person_id: str, staff: StaffPage,
                  name: Annotated[str, Form(max_length=64)] = "", phone: Annotated[str, Form(max_length=32)] = "",
                  moved_in: Annotated[str, Form(max_length=10)] = ""):
    site_guard(staff, site_id, change=True, roles=CHANGERS)
    landlord = _person_or_404(request, site_id, person_id)
    try:
        saved = people.save_one(db_of(request), site_id, {
            "name": name, "phone": phone, "kind": "tenant", "landlord_id": landlord["person_id"],
            "moved_in": _date(moved_in) or people.today_in_china(), "building": landlord["building"],
            "unit": landlord["unit"], "room": landlord["room"]}, by=staff.name, action="person.renter")
    except RegistryError as exc:
        return _back(site_id, f"people/{person_id}", problem=str(exc))
    return _back(site_id, f"people/{saved.person_id}", message="people.saved")


# --- site policy -------------------------------------------------------------------------


@router.get("/sites/{site_id}/policy")
def policy_page(request: Request, site_id: str, staff: StaffPage, message: str = "", version: int = 0):
    site_guard(staff, site_id, change=False)
    document = site_policy.current(db_of(request), site_id)
    return render(request, "people/policy.html", site=site_id, board="policy", doc=document, errors={},
                  supported=site_policy.supported, mask=site_policy.mask_names(db_of(request), site_id),
                  message="", published=version, can_change=staff.can_change(site_id))


@router.post("/sites/{site_id}/policy")
def policy_publish(request: Request, site_id: str, staff: StaffPage,
                   visitor_mode: Annotated[str, Form(max_length=32)] = "",
                   enforcement: Annotated[str, Form(max_length=32)] = "",
                   threshold_c: Annotated[str, Form(max_length=10)] = "",
                   offset_c: Annotated[str, Form(max_length=10)] = "",
                   posted_rules: Annotated[str, Form(max_length=3000)] = "",
                   duty_person: Annotated[str, Form(max_length=60)] = "",
                   duty_phone: Annotated[str, Form(max_length=30)] = "",
                   mask_names: Annotated[str, Form(max_length=5)] = "",
                   version: Annotated[int, Form()] = 0):
    site_guard(staff, site_id, change=True, roles=CHANGERS)
    db = db_of(request)
    form = {"visitor_mode": visitor_mode, "enforcement": enforcement, "threshold_c": threshold_c,
            "offset_c": offset_c, "posted_rules": posted_rules, "duty_person": duty_person, "duty_phone": duty_phone}
    document, errors = site_policy.publish(db, site_id, form, by=staff.name, expected_version=version)
    if errors:
        shown = {**site_policy.current(db, site_id), **{k: v for k, v in form.items() if k != "posted_rules"},
                 "posted_rules": posted_rules.splitlines(), "version": version}
        return render(request, "people/policy.html", status_code=422, site=site_id, board="policy", doc=shown,
                      errors=errors, supported=site_policy.supported, mask=bool(mask_names), message="",
                      published=0, can_change=True)
    site_policy.set_mask_names(db, site_id, bool(mask_names), by=staff.name)
    return _back(site_id, "policy", message="policy.published", version=document["version"])
