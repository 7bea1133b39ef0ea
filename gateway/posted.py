"""Posted at the gate (L605 在小区出入口公示, L422 责任人、值守电话): the rules
on the queue's screen, built from the policy in force, so a policy change
(a new visitor rule, masks at level 2) changes what the gate says at once.

    posted_rules(policy, threshold_c=37.3, gate_id="east-1") -> [{"zh": ..., "en": ...}, ...]
"""

from __future__ import annotations

from gateway.policy import Policy


def posted_rules(policy: Policy, *, threshold_c: float, gate_id: str = "", extra: list[str] = ()) -> list[dict]:
    lines: list[dict] = []

    def add(zh: str, en: str) -> None:
        lines.append({"zh": zh, "en": en})

    open_at = policy.open_entrance.as_dict()
    if gate_id and gate_id in policy.closed_gates:
        add(f"本出入口已关闭，请走{open_at['zh']}", f"This entrance is closed; please use {open_at['en']}")
    if gate_id and gate_id in policy.vehicles.vehicle_gates:
        add("车辆凭证出入，车内人员逐一测温；外来车辆禁止入内",
            "Vehicles need a vehicle pass; every occupant is measured; no outside vehicles")
    add(f"出入请出示通行证，配合测温；体温≥{threshold_c:.1f}℃不得进入",
        f"Show your pass and have your temperature taken; {threshold_c:.1f} °C or above may not enter")
    if policy.mask_required:
        add("进入须佩戴口罩", "Masks are required to enter")
    if policy.visitor_mode == "register":
        add("访客须测温正常并登记后进入", "Visitors: normal temperature and registration before entry")
    else:
        add("谢绝访客；特殊情况须登记报备", "No visitors; special cases must be registered and filed")
    drop = policy.courier_dropoff.as_dict()
    add(f"快递外卖不得入内，请放至{drop['zh']}", f"Couriers may not enter; parcels go to {drop['en']}")
    if policy.duty_person or policy.duty_phone:
        zh = "　".join(p for p in (f"责任人：{policy.duty_person}" if policy.duty_person else "",
                                  f"值守电话：{policy.duty_phone}" if policy.duty_phone else "") if p)
        en = "  ".join(p for p in (f"Responsible: {policy.duty_person}" if policy.duty_person else "",
                                  f"Duty phone: {policy.duty_phone}" if policy.duty_phone else "") if p)
        add(zh, en)
    for line in [*policy.posted_rules, *extra]:
        add(line, line)
    return lines
