"""Texts for the guard screen and the public display, by message key.

Simplified Chinese first, English second. `decide()` returns keys, not
texts, so the log stays language-neutral and a screen can switch language.

Public texts never reveal health details (SPEC rule 12, L1316): a fever, a
health code or home observation all read as a neutral "please see the staff"
or "please contact the community". The guard's texts say what to do; for
home observation the guard too gets no reason (SPEC rule 9).

    text("public.courier", "zh", dropoff={"zh": "东门快递架", "en": "the east-gate shelf"})
"""

from __future__ import annotations

from collections.abc import Mapping

MESSAGES: dict[str, dict[str, str]] = {
    # --- guard screen ---------------------------------------------------------
    "guard.admit": {"zh": "放行", "en": "Admitted"},
    "guard.admit_exit": {"zh": "放行（出）", "en": "Admitted (exit)"},
    "guard.override": {"zh": "已由值守人员手动放行并记录", "en": "Opened by the guard; override logged"},
    "guard.fever": {
        "zh": "体温异常：请复测；确认后引导至发热门诊并上报",
        "en": "Elevated temperature: re-measure; if confirmed, direct to a fever clinic and report",
    },
    "guard.fever_case": {
        "zh": "发热处置中：请用体温计复测，并在“处置”中记录读数和决定",
        "en": "Open fever case: take a clinical reading and record it and your decision under Handle",
    },
    "guard.fever_soft": {
        "zh": "已放行（宽松模式）：体温异常，请跟进并上报",
        "en": "Admitted (soft mode): elevated temperature, follow up and report",
    },
    "guard.no_reading": {
        "zh": "未测得体温：请对方靠近测温区并保持不动",
        "en": "No temperature: ask the person to come closer and hold still",
    },
    "guard.out_of_range": {
        "zh": "测温读数不合理：请用手持体温计复测",
        "en": "Implausible temperature reading: re-measure with a handheld thermometer",
    },
    "guard.sensor_fault": {
        "zh": "测温仪故障：请人工测温，必要时手动放行",
        "en": "Thermometer fault: measure by hand; override if needed",
    },
    "guard.no_temperature_soft": {
        "zh": "已放行（宽松模式）：未能测温，请人工测温",
        "en": "Admitted (soft mode): no temperature taken, measure by hand",
    },
    "guard.no_credential": {"zh": "未出示通行证", "en": "No pass shown"},
    "guard.pass_invalid": {
        "zh": "通行证无效（无法识别或签名不符）",
        "en": "Invalid pass (unreadable or signature does not match)",
    },
    "guard.unknown_issuer": {
        "zh": "通行证签发机构未知（可能需同步）",
        "en": "Pass from an unknown issuer (sync may be needed)",
    },
    "guard.expired": {"zh": "通行证已过期", "en": "Pass expired"},
    "guard.not_yet_valid": {"zh": "通行证尚未生效", "en": "Pass not yet valid"},
    "guard.wrong_site": {"zh": "非本小区通行证", "en": "Pass for another community"},
    "guard.revoked": {"zh": "通行证已注销", "en": "Pass revoked"},
    "guard.moved_out": {"zh": "登记为已迁出，请核实身份", "en": "Registered as moved out; check identity"},
    "guard.observation": {
        "zh": "不予放行，请联系社区",
        "en": "Not permitted; contact the community",
    },
    "guard.passback": {
        "zh": "该通行证刚在此方向使用过，请核实是否本人",
        "en": "This pass was just used in this direction; check the holder",
    },
    "guard.registry_stale": {
        "zh": "居民名单过久未更新：请人工核对通行证和本人后手动开闸",
        "en": "Resident list is out of date: check the pass and the holder, then open by hand",
    },
    "guard.registry_stale_alert": {
        "zh": "已放行：居民名单过久未更新，请留意核对",
        "en": "Admitted: the resident list is out of date; keep an eye out",
    },
    "guard.passback_alert": {
        "zh": "已放行：该通行证刚在此方向使用过，请留意",
        "en": "Admitted: this pass was just used in this direction; keep an eye out",
    },
    "guard.visitor_register": {
        "zh": "访客：请登记姓名、来源地、电话、事由、被访人后放行",
        "en": "Visitor: register name, origin, phone, reason and host before entry",
    },
    "guard.visitor_denied": {
        "zh": "谢绝访客；特殊情况须登记并报备",
        "en": "Visitors refused; special cases must be registered and filed",
    },
    "guard.courier": {
        "zh": "快递外卖人员不得入内，请放至{dropoff}",
        "en": "Couriers may not enter; parcels go to {dropoff}",
    },
    "guard.health_code_refused": {"zh": "健康码异常，不予放行", "en": "Health code: refused"},
    "guard.health_code_check": {"zh": "请核验健康码", "en": "Check the health code"},
    "guard.health_code_missing": {"zh": "请出示健康码", "en": "Ask for the health code"},
    "guard.internal_error": {
        "zh": "系统异常：请人工核验，必要时手动放行",
        "en": "System error: check by hand; override if needed",
    },
    # gate rules from the notices (issue 12)
    "guard.gate_closed": {
        "zh": "本出入口已关闭：请引导至{open_entrance}",
        "en": "This entrance is closed: direct people to {open_entrance}",
    },
    "guard.unstaffed": {
        "zh": "无人值守：自动通行已暂停，请值守人员签到",
        "en": "Nobody on duty: automatic entry paused until a guard signs in",
    },
    "guard.no_mask": {"zh": "未佩戴口罩，不予进入（已记录）", "en": "No mask: refused (logged)"},
    "guard.refused_measurement": {
        "zh": "拒绝测温，不予进入（已记录）",
        "en": "Refused to be measured: refused (logged)",
    },
    "guard.one_at_a_time": {
        "zh": "画面中有{count}张通行证：请逐一通过，未放行",
        "en": "{count} passes in view: one at a time; nobody admitted",
    },
    "guard.tailgate": {
        "zh": "尾随：一次开闸有多人通过，已记录",
        "en": "Tailgating: more than one person passed one opening (logged)",
    },
    "guard.vehicle_admit": {"zh": "车辆放行", "en": "Vehicle admitted"},
    "guard.vehicle_fever": {
        "zh": "车内人员体温异常：车辆不予放行，请复测并上报",
        "en": "An occupant's temperature is elevated: vehicle stopped; re-measure and report",
    },
    "guard.vehicle_outside": {
        "zh": "外来车辆不得进入；特殊情况须登记例外原因",
        "en": "Outside vehicles may not enter; a special case needs a logged exception",
    },
    "guard.vehicle_exception": {
        "zh": "外来车辆已按例外放行并记录",
        "en": "Outside vehicle admitted as an exception (logged)",
    },
    "guard.vehicle_no_pass": {
        "zh": "车辆通行证无效或与车牌不符",
        "en": "Vehicle pass invalid or does not match the plate",
    },
    # --- public display -------------------------------------------------------
    "public.welcome": {"zh": "请通行", "en": "Please go ahead"},
    "public.goodbye": {"zh": "请通行，注意防护", "en": "Please go ahead; stay safe"},
    "public.see_staff": {"zh": "请到工作人员处", "en": "Please see the staff"},
    "public.contact_community": {"zh": "请联系社区", "en": "Please contact the community"},
    "public.hold_still": {
        "zh": "请靠近测温区，保持不动",
        "en": "Please come closer to the thermometer and hold still",
    },
    "public.show_pass": {"zh": "请出示通行证", "en": "Please show your pass"},
    "public.pass_invalid": {
        "zh": "通行证无效，请到工作人员处",
        "en": "Pass not valid; please see the staff",
    },
    "public.pass_expired": {
        "zh": "通行证已过期，请联系社区续办",
        "en": "Pass expired; please renew it with the community",
    },
    "public.wrong_site": {"zh": "非本小区通行证", "en": "This pass is for another community"},
    "public.passback": {"zh": "该通行证刚刚已使用", "en": "This pass was just used"},
    "public.visitor_register": {"zh": "访客请到工作人员处登记", "en": "Visitors: please register with the staff"},
    "public.visitors_refused": {"zh": "谢绝访客", "en": "No visitors"},
    "public.gate_closed": {
        "zh": "本出入口已关闭，请走{open_entrance}",
        "en": "This entrance is closed; please use {open_entrance}",
    },
    "public.wear_mask": {"zh": "请佩戴口罩", "en": "Please wear a mask"},
    "public.one_at_a_time": {"zh": "请逐一通过", "en": "One at a time, please"},
    "public.vehicle_outside": {"zh": "外来车辆禁止入内", "en": "No outside vehicles"},
    "public.courier": {
        "zh": "快递外卖请放至{dropoff}，谢谢",
        "en": "Please leave parcels and food at {dropoff}, thank you",
    },
}

LANGUAGES = ("zh", "en")


def text(key: str, lang: str = "zh", **fields: str | Mapping[str, str]) -> str:
    """The text for `key` in `lang` (zh or en), with {fields} filled in.

    A field may be a plain string or a {"zh": ..., "en": ...} mapping. An
    unknown key returns the key itself, so a screen never crashes on a newer
    decision core.
    """
    entry = MESSAGES.get(key)
    if entry is None:
        return key
    template = entry.get(lang) or entry["zh"]
    values = {
        name: (value.get(lang) or value.get("zh", "")) if isinstance(value, Mapping) else str(value)
        for name, value in fields.items()
    }
    try:
        return template.format(**values)
    except (KeyError, IndexError, ValueError):
        return template
