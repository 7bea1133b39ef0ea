"""The pages' message catalogue: Simplified Chinese first, English second.

`MESSAGES[key] = (zh, en)`. Templates call `t("key", **fields)`; Python code
calls `translate(lang, key, **fields)`. Another page module adds its own
messages with `register({...})` at import, so modules never edit one shared
dictionary. A key missing from the catalogue shows as itself, which a test
notices.
"""

from __future__ import annotations

LANGS = ("zh", "en")
DEFAULT_LANG = "zh"

MESSAGES: dict[str, tuple[str, str]] = {
    "app.title": ("社区防控登记", "Community registry"),
    "nav.gates": ("闸机", "Gates"),
    "nav.fevers": ("发热病例", "Fever cases"),
    "nav.ledgers": ("台账", "Ledgers"),
    "nav.report": ("日报告", "Daily report"),
    "nav.office": ("街道汇总", "Street office summary"),
    "nav.docs": ("接口文档", "API docs"),
    "nav.site": ("小区", "Community"),
    "nav.switch": ("切换", "Switch"),
    "nav.logout": ("退出", "Log out"),
    "nav.lang": ("English", "中文"),
    "login.title": ("工作人员登录", "Staff log-in"),
    "login.name": ("用户名", "Name"),
    "login.password": ("密码", "Password"),
    "login.submit": ("登录", "Log in"),
    "login.wrong": ("用户名或密码错误", "Wrong name or password"),
    "login.throttled": ("尝试次数过多，请 {seconds} 秒后再试", "Too many attempts; try again in {seconds} s"),
    "login.expired": ("表单已过期，请重新登录", "The form expired; please log in again"),
    "role.admin": ("管理员", "Administrator"),
    "role.worker": ("社区工作人员", "Community worker"),
    "role.guard_supervisor": ("值守负责人", "Guard supervisor"),
    "role.inspector": ("督查（只读）", "Inspector (read-only)"),
    "role.street_officer": ("街道工作人员（只读）", "Street-office officer (read-only)"),
    "error.title": ("无法完成", "Cannot do that"),
    "error.403": ("您没有权限访问这里", "You may not open this"),
    "error.404": ("没有找到", "Not found"),
    "error.invalid": ("输入有误", "Invalid input"),
    "error.back": ("返回首页", "Back to the start"),
    "error.csrf": ("表单已过期或来源不明，请刷新页面后重试", "The form expired or came from elsewhere; reload the page and try again"),
    "home.no_sites": ("您的账号还没有可查看的小区", "Your account has no community to look at yet"),
    "common.none": ("无", "None"),
    "common.day": ("日期", "Day"),
    "common.show": ("查看", "Show"),
    "common.save": ("保存", "Save"),
    "common.csv": ("下载 CSV", "Download CSV"),
    "common.xlsx": ("下载 Excel", "Download Excel"),
    "common.yes": ("是", "yes"),
    "common.no": ("否", "no"),
    "common.readonly": ("只读", "read-only"),
}


def register(messages: dict[str, tuple[str, str]]) -> None:
    """Add a page module's messages; a key defined twice differently is a bug."""
    for key, pair in messages.items():
        if key in MESSAGES and MESSAGES[key] != pair:
            raise ValueError(f"message {key!r} is already defined as {MESSAGES[key]!r}")
        MESSAGES[key] = pair


def translate(lang: str, key: str, **fields) -> str:
    pair = MESSAGES.get(key)
    if pair is None:
        return key
    text = pair[1] if lang == "en" else pair[0]
    return text.format(**fields) if fields else text
