"""What every command's --help shows besides its options: examples, and plain NAME placeholders."""

from typing import Any


EXAMPLES: dict[str, tuple[str, ...]] = {
    "config check": ("inbox config check", "inbox -c team.toml config check --json"),
    "config show": ("inbox config show",),
    "config path": ("inbox config path",),
    "db upgrade": ("INBOX_DATABASE_URL=postgresql+psycopg://inbox@db/inbox inbox db upgrade",),
    "db status": ("inbox db status --json",),
    "sandbox serve": ("inbox sandbox serve", "inbox sandbox serve --port 0 --large 100000 --write-config big.toml",
                      "inbox sandbox serve --webhooks http://127.0.0.1:8080"),
    "sync": ("inbox sync", "inbox sync --account tokoshop-ig --dry-run", "inbox sync --json"),
    "run": ("inbox run", "inbox -c /etc/inbox/config.toml run"),
    "serve": ("inbox serve", "inbox serve --host 0.0.0.0 --port 9000"),
    "accounts": ("inbox accounts", "inbox accounts --json"),
    "accounts reset": ("inbox accounts reset tokoshop-fb",),
    "accounts repoint": ("inbox accounts repoint tokoshop-fb",),
    "quarantine": ("inbox quarantine", "inbox quarantine --account tokoshop-x --all --json"),
    "quarantine show": ("inbox quarantine show 3",),
    "list": ("inbox list", "inbox list -a me", "inbox list --status open --channel instagram --assignee none --tag refund",
             "inbox list --overdue", "inbox list --window-closing 4"),
    "show": ("inbox show 42", "inbox show 42 --full --no-pager", "inbox show 42 --json"),
    "claim": ("inbox claim", "inbox claim 42", "inbox claim --channel x"),
    "assign": ("inbox assign 42 budi", "inbox assign 42 none"),
    "status": ("inbox status 42 resolved",),
    "priority": ("inbox priority 42 urgent",),
    "tag": ("inbox tag 42 refund", "inbox tag 42 refund --remove"),
    "note": ('inbox note 42 "called the customer, refund approved"',),
    "merge": ("inbox merge 43 42",),
    "unmerge": ("inbox unmerge 43",),
    "link": ('inbox link 7 19 --reason "same invoice INV/20261120/MPL/3817265540"',),
    "unlink": ("inbox unlink 19",),
    "search": ('inbox search "INV/20261120/MPL/3817265540"', "inbox search refund --status open --channel facebook"),
    "reply": ('inbox reply 42 "Halo kak, kami cek dulu ya"', "inbox reply 42 --editor", "inbox reply 42 --template refund --yes",
              "echo 'Halo kak' | inbox reply 42 - --yes"),
    "outbox": ("inbox outbox", "inbox outbox --all --json"),
    "outbox retry": ("inbox outbox retry 7",),
    "stats": ("inbox stats", "inbox stats --days 30 --channel instagram --json"),
    "export": ("inbox export --format csv --output tickets.csv", "inbox export --status open --channel x | head"),
    "demo": ("inbox demo", "inbox demo --keep"),
}


def _examples_epilog(lines: tuple[str, ...]) -> str:
    # "\b" keeps the help formatter from re-flowing the lines into one paragraph.
    return "\b\nExamples:\n" + "\n".join(f"  {line}" for line in lines)


def attach_examples(typer_app: Any, prefix: str = "") -> None:
    """Every command's help ends with its examples (from EXAMPLES)."""
    for command in typer_app.registered_commands:
        name = command.name or command.callback.__name__
        key = f"{prefix}{name}"
        if key in EXAMPLES:
            command.epilog = _examples_epilog(EXAMPLES[key])
    for group in typer_app.registered_groups:
        key = f"{prefix}{group.name}"
        sub = group.typer_instance
        if key in EXAMPLES and sub.registered_callback is not None:  # a group that is also a command
            sub.registered_callback.epilog = _examples_epilog(EXAMPLES[key])
        attach_examples(sub, f"{key} ")


def plain_placeholders() -> None:
    """Help shows NAME placeholders, never Python types (`<list[str]>`, `<int range>`) nor `{ID}`."""
    from typer import core

    param = getattr(core, "_TyperParameter", None)
    argument = getattr(core, "TyperArgument", None)
    if param is not None and hasattr(param, "display_type"):
        param.display_type = lambda self, ctx: self.metavar or (self.name or "value").upper()
    if argument is not None and hasattr(argument, "_usage_display_name"):
        argument.display_type_rich = lambda self, ctx: None  # the name says it: `ID  Ticket id.`

        def usage_name(self: Any) -> str:
            name = self.metavar or (self.name or "value").upper()
            if not self.required and not name.startswith("["):
                name = f"[{name}]"
            return name + ("..." if self.nargs != 1 and not name.endswith("...") else "")

        argument._usage_display_name = usage_name

