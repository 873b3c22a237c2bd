#!/usr/bin/env python3
"""Print the key tables of docs/configuration.md from fastlookup.config.

Run ``python scripts/config-doc.py > /tmp/keys.md`` and paste between the
markers of docs/configuration.md; tests/test_config_doc.py fails when a key
is missing from the document.
"""

import dataclasses
import typing

from fastlookup import config as c

TABLES = [
    ("server", c.ServerConfig),
    ("upstream", c.UpstreamConfig),
    ("cache", c.CacheConfig),
    ("redis", c.RedisConfig),
    ("postfix", c.PostfixConfig),
    ("metrics", c.MetricsConfig),
    ("log", c.LogConfig),
    ("health", c.HealthConfig),
    ('dnsbl."ZONE"] / [rhsbl."ZONE"', c.ZoneConfig),
    ("policy.NAME", c.PolicyConfig),
]


def main() -> None:
    for name, cls in TABLES:
        print(f"\n### `[{name}]`\n\n| key | default | bound |\n|---|---|---|")
        typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            default = list(f.default) if isinstance(f.default, tuple) else f.default
            meta = f.metadata
            bound = ""
            if "range" in meta:
                bound = f"{meta['range'][0]} .. {meta['range'][1]}"
            if "choices" in meta:
                bound = " \\| ".join(meta["choices"])
            if "each" in meta:
                bound = "each of " + ", ".join(meta["each"])
            if meta.get("cidr"):
                bound = "IP networks"
            if meta.get("octal"):
                bound = "octal file mode" + (' or `""` (inherit)' if meta.get("inherit") else "")
            if "doc_bound" in meta:
                bound = meta["doc_bound"]
            shown = "from the built-in profile" if default is None else "`" + repr(default).replace("'", '"') + "`"
            shown = meta.get("doc_default", shown)
            print(f"| `{f.name}` | {shown} | {bound} |")


if __name__ == "__main__":
    main()
