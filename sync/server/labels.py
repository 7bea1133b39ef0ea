"""Words for the codes the gates upload (reason, decision, direction), in
Chinese and English, for reports, ledgers and their exports. An unknown code
shows as itself."""

from __future__ import annotations

# code -> (zh, en)
REASONS: dict[str, tuple[str, str]] = {
    "ok": ("正常", "OK"),
    "fever": ("体温异常", "Fever"), "no_reading": ("未测得体温", "No reading"),
    "reading_out_of_range": ("测温读数不合理", "Implausible reading"),
    "sensor_fault": ("测温仪故障", "Thermometer fault"), "no_credential": ("无通行证", "No pass"),
    "malformed": ("通行证无法识别", "Unreadable pass"), "bad_signature": ("通行证签名无效", "Invalid pass signature"),
    "unknown_issuer": ("通行证签发方未知", "Unknown pass issuer"), "expired": ("通行证过期", "Pass expired"),
    "not_yet_valid": ("通行证未生效", "Pass not yet valid"), "revoked": ("通行证已作废", "Pass revoked"),
    "wrong_site": ("非本小区通行证", "Pass of another community"), "moved_out": ("已搬离", "Moved out"),
    "under_observation": ("居家观察期", "Under home observation"), "passback": ("重复进出", "Passback"),
    "health_code_red": ("健康码红码", "Red health code"), "health_code_yellow": ("健康码黄码", "Yellow health code"),
    "health_code_missing": ("未出示健康码", "No health code shown"),
    "registry_stale": ("登记信息未同步", "Registry copy out of date"), "internal_error": ("系统故障", "System fault"),
    "visitor": ("外来人员", "Visitor"), "visitor_policy": ("禁止外来人员", "No visitors allowed"),
    "visitor_record": ("访客未登记", "Visitor not registered"), "ambient_warning": ("环境温度异常", "Ambient temperature"),
    "fever_case_open": ("发热处置中", "Fever case open"),
    # gate rules (issue 12)
    "no_mask": ("未佩戴口罩", "No mask"), "refused_measurement": ("拒绝测温", "Refused measurement"),
    "unstaffed": ("无人值守", "Unstaffed"), "gate_closed": ("出入口已关闭", "Gate closed"),
    "one_at_a_time": ("多人同时通过（请逐一通过）", "Several at once (one at a time)"),
    "tailgate": ("尾随通过", "Tailgating"), "vehicle_outside": ("外来车辆", "Outside vehicle"),
    "vehicle_exception": ("外来车辆（值守人员放行）", "Outside vehicle (let in by the guard)"),
    "vehicle_no_pass": ("车辆无有效通行证", "Vehicle without a valid pass"),
    "unit_door_members_only": ("单元门仅限本楼人员", "Unit door: residents of the building only"),
    "guard_override": ("值守人员放行", "Let through by the guard"),
}
DECISIONS: dict[str, tuple[str, str]] = {"admit": ("放行", "Admitted"), "deny": ("拒绝", "Refused")}
DIRECTIONS: dict[str, tuple[str, str]] = {"in": ("进入", "In"), "out": ("外出", "Out")}


def _word(table: dict[str, tuple[str, str]], code, lang: str):
    if not isinstance(code, str) or code not in table:
        return code
    zh, en = table[code]
    return en if lang == "en" else zh


def reason_label(code: str, lang: str = "zh") -> str:
    return _word(REASONS, code, lang)


def decision_label(code: str | None, lang: str = "zh") -> str | None:
    return _word(DECISIONS, code, lang)


def direction_label(code: str | None, lang: str = "zh") -> str | None:
    return _word(DIRECTIONS, code, lang)
