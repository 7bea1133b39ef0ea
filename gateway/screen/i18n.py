"""Words on the guard screen, in Simplified Chinese (default) and English.

Everything a person reads on the screen's own chrome is here, keyed by a
short name, with the reason codes of the decision core in words (`reason.*`).
What to do about a decision (`guard.*`) and what the queue sees (`public.*`,
never a health detail) come from `gateway.messages` with each decision.
The page receives the whole catalogue for its language as JSON and renders
codes itself, so server-sent updates stay language-neutral.
"""

from __future__ import annotations

LANGUAGES = ("zh", "en")

_MESSAGES: dict[str, tuple[str, str]] = {
    # --- page chrome -----------------------------------------------------------
    "title": ("门岗测温核验", "Gate check"),
    "gate": ("门岗", "Gate"),
    "direction.in": ("进", "In"),
    "direction.out": ("出", "Out"),
    "direction.both": ("进出", "In & out"),
    "lang.switch": ("English", "中文"),
    "camera": ("摄像头画面", "Camera"),
    "camera.none": ("暂无画面", "No picture"),
    "waiting": ("等待通行", "Waiting"),
    "waiting.hint": ("请出示通行证并靠近测温", "Show your pass and come close to the thermometer"),
    "admit": ("通行", "ADMIT"),
    "deny": ("禁止通行", "DENY"),
    "fever": ("体温异常", "FEVER"),
    "measuring": ("正在测温…", "Measuring…"),
    "prompt.hold_still": ("请靠近一点，保持不动", "Come closer and hold still"),
    "prompt.remeasure": ("复测中：请靠近测温", "Re-measuring: come close to the thermometer"),
    "reading": ("体温读数（仅值守可见）", "Reading (guard only)"),
    "reading.body": ("体温", "Body"),
    "reading.skin": ("额温原始值", "Forehead raw"),
    "reading.room": ("环境温度", "Room"),
    "reading.threshold": ("阈值", "Threshold"),
    "reading.none": ("未测到", "none"),
    "person": ("人员", "Person"),
    "person.unknown": ("未识别", "Unknown"),
    "today": ("今日统计", "Today"),
    "count.admit": ("放行", "Admitted"),
    "count.deny": ("拦截", "Refused"),
    "count.flagged": ("体温异常", "Fever flags"),
    "recent": ("最近记录", "Recent"),
    "recent.none": ("今天还没有记录", "Nothing yet today"),
    "health": ("设备状态", "Devices"),
    "health.thermometer": ("测温仪", "Thermometer"),
    "health.camera": ("摄像头", "Camera"),
    "health.disk": ("存储", "Storage"),
    "health.clock": ("时间校准", "Clock"),
    "health.registry": ("居民名单", "Resident list"),
    "health.sync": ("上传", "Upload"),
    "health.ok": ("正常", "OK"),
    "health.fault": ("故障", "Fault"),
    "health.warn": ("注意", "Check"),
    "health.off": ("未启用", "Off"),
    "health.thermometer.fault": ("测温仪无响应：自动放行已暂停", "Thermometer not answering: automatic entry paused"),
    "health.camera.fault": ("摄像头无画面：自动放行已暂停", "Camera shows nothing: automatic entry paused"),
    "health.disk.fault": ("日志无法写入：自动放行已暂停", "Cannot write the log: automatic entry paused"),
    "health.disk.low": ("存储空间不足", "Storage almost full"),
    "health.clock.unsynced": ("时间未校准", "Clock not synchronised"),
    "health.registry.stale": ("名单已过期，请联网更新", "List out of date: connect to update"),
    "health.registry.never": ("尚未下载名单", "List never downloaded"),
    "health.sync.backlog": ("待上传 {n} 条", "{n} waiting to upload"),
    "health.sync.offline": ("未连接服务器", "Server not reachable"),
    "health.paused": ("自动放行已暂停，居民可由值守人员手动开闸", "Automatic entry paused: the guard can open the gate"),
    "rules": ("公示", "Posted rules"),
    "policy.visitor.deny": ("外来人员：一律劝返（特殊情况登记报备）", "Visitors: refused unless a filed special case"),
    "policy.visitor.register": ("外来人员：测温、登记后可进入", "Visitors: may enter after temperature and registration"),
    "policy.hard": ("体温异常或设备故障：不开闸", "Fever or device fault: gate stays shut"),
    "policy.soft": ("体温异常：提醒但放行", "Fever: alert but open"),
    # --- guard and actions --------------------------------------------------------
    "shift": ("当班", "On duty"),
    "shift.none": ("未签到", "Nobody signed in"),
    "shift.signin": ("签到上岗", "Sign in"),
    "shift.signout": ("签退", "Sign out"),
    "shift.name": ("姓名或工号", "Name or staff ID"),
    "shift.pin": ("PIN 码", "PIN"),
    "shift.need": ("请先签到上岗", "Please sign in first"),
    "action.open": ("手动开闸", "Open gate"),
    "action.remeasure": ("复测", "Re-measure"),
    "action.visitor": ("访客登记", "Register visitor"),
    "action.staff_temp": ("值守体温", "My temperature"),
    "action.disinfect": ("消毒记录", "Disinfection"),
    "action.cancel": ("取消", "Cancel"),
    "action.save": ("保存", "Save"),
    "action.confirm": ("确认", "Confirm"),
    "action.done": ("已记录", "Recorded"),
    "override.title": ("手动开闸：请选择原因", "Open the gate: choose a reason"),
    "override.reason.resident_fault": ("本小区居民，设备故障", "Resident; device fault"),
    "override.reason.remeasured_ok": ("人工复测体温正常", "Re-measured by hand: normal"),
    "override.reason.registered_visitor": ("已登记访客", "Registered visitor"),
    "override.reason.emergency": ("紧急情况（救护、消防）", "Emergency (ambulance, fire)"),
    "override.reason.other": ("其他（请填写）", "Other (write it)"),
    "override.note": ("说明", "Note"),
    "visitor.title": ("外来人员登记", "Visitor registration"),
    "visitor.name": ("姓名", "Name"),
    "visitor.origin": ("来源地", "Coming from"),
    "visitor.phone": ("手机号", "Mobile phone"),
    "visitor.address": ("本市住址", "Address in the city"),
    "visitor.reason": ("来访事由", "Reason for visit"),
    "visitor.visiting": ("被访居民（楼号-单元-门牌）", "Resident visited (building-unit-flat)"),
    "visitor.temperature": ("体温 ℃", "Temperature °C"),
    "visitor.special_case": ("特殊情况（已报备）", "Special case (filed)"),
    "visitor.filed_ref": ("报备编号", "Filing reference"),
    "visitor.admit": ("登记后开闸", "Open the gate after registering"),
    "staff_temp.title": ("值守人员体温（早、晚各一次）", "Guard temperature (morning and evening)"),
    "staff_temp.person": ("姓名", "Name"),
    "staff_temp.period": ("时段", "When"),
    "staff_temp.morning": ("早", "Morning"),
    "staff_temp.evening": ("晚", "Evening"),
    "disinfect.title": ("测温仪消毒记录", "Thermometer disinfection"),
    "disinfect.note": ("备注（可不填）", "Note (optional)"),
    "alert.title": ("体温异常！", "FEVER ALERT"),
    "alert.body": ("请引导此人到一旁，用水银或电子体温计复测；确认后引导至发热门诊并上报。",
                   "Take the person aside and confirm with a clinical thermometer; if confirmed, direct them to a fever clinic and report it."),
    "alert.note": ("处置情况（必填）", "What was done (required)"),
    "alert.ack": ("已处置，确认", "Handled: acknowledge"),
    "alert.sound_hint": ("点击任意处开启提示音", "Tap anywhere to enable the alarm sound"),
    "login.title": ("请输入 PIN 码", "Enter the PIN"),
    "login.bad": ("PIN 码不正确", "Wrong PIN"),
    "login.locked": ("错误次数过多，请一分钟后再试", "Too many tries; wait a minute"),
    "login.no_pin": ("此设备未设置 PIN 码，只能在本机查看。", "No PIN is set on this device, so the screen is only shown locally."),
    "login.submit": ("进入", "Enter"),
    "override.by": ("值守开闸：{operator}", "Opened by {operator}"),
    "live": ("实时", "Live"),
    "offline": ("连接中断，正在重连…", "Connection lost, reconnecting…"),
    "public.title": ("请出示通行证并测温", "Show your pass and check your temperature"),
    # --- form errors ----------------------------------------------------------------
    "err.required": ("必填", "Required"),
    "err.too_long": ("太长了（最多 {max} 个字）", "Too long (at most {max} characters)"),
    "err.name": ("请填写真实姓名（不含数字、符号）", "Write a real name (no digits or symbols)"),
    "err.phone": ("手机号应为 11 位数字，以 1 开头；座机请写区号，如 010-12345678",
                  "A mobile number has 11 digits starting with 1; landlines need the area code, e.g. 010-12345678"),
    "err.temperature": ("体温应在 34.0 到 43.0 ℃ 之间", "Temperature must be between 34.0 and 43.0 °C"),
    "err.fever_no_admit": ("体温达到 {threshold} ℃，不能放行；请引导至发热门诊", "{threshold} °C or more: cannot admit; direct to a fever clinic"),
    "err.filed_ref": ("现行政策只允许已报备的特殊情况进入：请勾选特殊情况并填写报备编号",
                      "Current policy admits only filed special cases: tick special case and give the reference"),
    "err.pin": ("PIN 码不正确", "Wrong PIN"),
    "err.reason": ("请选择开闸原因", "Choose a reason"),
    "err.note_other": ("选择“其他”时请写明原因", "Write the reason when choosing Other"),
    "err.period": ("请选择早或晚", "Choose morning or evening"),
    "err.no_decision": ("没有可复测的记录", "Nothing to re-measure"),
    "err.journal": ("日志无法写入：{detail}", "Cannot write the log: {detail}"),
    "err.unknown_alert": ("此提醒已处理", "This alert was already handled"),
    "err.form": ("请修改标红的项目", "Please fix the fields marked in red"),
    "done.signin": ("{operator} 已签到上岗", "{operator} signed in"),
    "done.signout": ("{operator} 已签退", "{operator} signed out"),
    "done.override": ("已开闸，记录人：{operator}", "Gate opened, logged by {operator}"),
    "done.override_unlogged": ("已开闸，但日志无法写入！请手工记录", "Gate opened, but the log could not be written! Record it by hand"),
    "done.remeasure": ("请此人靠近测温仪复测", "Ask the person to come close to the thermometer again"),
    "done.visitor": ("访客 {name} 已登记", "Visitor {name} registered"),
    "done.staff_temp": ("已记录 {person} 的体温", "Temperature of {person} recorded"),
    "done.disinfect": ("已记录消毒", "Disinfection recorded"),
    "done.ack": ("已确认处置", "Alert acknowledged"),
    # --- reason codes: what the guard sees ------------------------------------------
    "reason.ok": ("通行证有效，体温正常", "Valid pass, normal temperature"),
    "reason.fever": ("体温达到或超过阈值，请复测", "At or above the threshold: re-measure"),
    "reason.no_reading": ("没有测到体温：请靠近、保持不动后复测", "No temperature taken: come closer, hold still, re-measure"),
    "reason.reading_out_of_range": ("体温读数不可信，请复测", "Reading not believable: re-measure"),
    "reason.sensor_fault": ("测温仪故障，请人工测温", "Thermometer fault: measure by hand"),
    "reason.no_credential": ("没有出示通行证", "No pass shown"),
    "reason.malformed": ("不是本系统的通行证", "Not one of our passes"),
    "reason.bad_signature": ("通行证无效（疑似伪造）", "Pass is not genuine"),
    "reason.unknown_issuer": ("通行证不是认可单位签发的", "Pass from an unknown issuer"),
    "reason.expired": ("通行证已过期", "Pass has expired"),
    "reason.not_yet_valid": ("通行证尚未生效", "Pass not valid yet"),
    "reason.wrong_site": ("不是本小区的通行证", "Pass for another community"),
    "reason.revoked": ("通行证已作废", "Pass has been cancelled"),
    "reason.under_observation": ("不允许通行，请联系社区", "Not permitted: contact the community office"),
    "reason.moved_out": ("已迁出，请联系社区", "Moved out: contact the community office"),
    "reason.unknown_person": ("名单中没有此人", "Not on the resident list"),
    "reason.passback": ("此通行证刚刚已使用", "This pass was just used"),
    "reason.visitor_policy": ("外来人员暂不允许进入", "Visitors are not admitted now"),
    "reason.visitor_registered": ("访客已登记", "Visitor registered"),
    "reason.courier": ("快递外卖不得入内，请放至指定位置", "Couriers do not enter: use the drop-off point"),
    "reason.guard_override": ("值守人员手动开闸", "Opened by the guard"),
    "reason.risk_red": ("健康码红码", "Health code red"),
    "reason.risk_yellow": ("健康码黄码", "Health code yellow"),
    "reason.journal_fault": ("日志无法写入，自动放行已暂停", "Log cannot be written: automatic entry paused"),
    "reason.camera_fault": ("摄像头故障", "Camera fault"),
    "reason.ambient_warning": ("环境温度超出范围，读数可能不准", "Room temperature out of range: reading may be off"),
    "reason.remeasure_cleared": ("复测正常", "Re-measure normal"),
    "reason.remeasure_confirmed": ("复测仍偏高", "Re-measure still high"),
    # --- what the queue sees ------------------------------------------------------------
    "public.admit": ("请通行", "Please go ahead"),
    "public.see_staff": ("请到工作人员处", "Please see the staff"),
}

def catalogue(lang: str) -> dict[str, str]:
    """Every text for one language (the page gets this as JSON)."""
    index = LANGUAGES.index(lang if lang in LANGUAGES else "zh")
    return {key: texts[index] for key, texts in _MESSAGES.items()}


def text(key: str, lang: str = "zh", **values) -> str:
    """One text; an unknown key comes back as the key (visible, never a crash)."""
    texts = _MESSAGES.get(key)
    if texts is None:
        return key
    value = texts[LANGUAGES.index(lang) if lang in LANGUAGES else 0]
    return value.format(**values) if values else value


def reason_text(code: str, lang: str = "zh") -> str:
    return text(f"reason.{code}", lang) if f"reason.{code}" in _MESSAGES else code


def pick_language(requested: str | None, default: str = "zh") -> str:
    return requested if requested in LANGUAGES else default
