"""The C view of the protocol: tag_proto.h generated from messages.toml, plus tag_link.h.

tag_proto.h holds the constants, includes tag_link.h (the link layer API of tag_link.c) and then
declares one struct with inline pack and unpack functions per message. Firmware includes only
tag_proto.h, from the folder write_c_header() fills.
"""

from __future__ import annotations

from pathlib import Path

from device_sim.protocol.spec import (
    MAX_BODY,
    MAX_FRAME,
    MAX_PAYLOAD,
    MESSAGES,
    PROTOCOL_VERSION,
    SPEC_PATH,
    STR_LEN,
    CounterUnit,
    ErrorCode,
    LogitType,
    MessageSpec,
)

HERE = Path(__file__).resolve().parent
LINK_SOURCE = HERE / "tag_link.c"  # compile it with the folder given to write_c_header on -I
LINK_HEADER = HERE / "tag_link.h"  # its API; tag_proto.h includes it, write_c_header copies it
HEADER_NAME = "tag_proto.h"

_C_TYPES = {"u8": "uint8_t", "u16": "uint16_t", "u32": "uint32_t", "i8": "int8_t",
            "i16": "int16_t", "i32": "int32_t", "f32": "float"}


def _c_comment(text: str) -> str:
    return f" /* {text} */" if text else ""


def _c_struct(spec: MessageSpec) -> list[str]:
    lower = spec.name.lower()
    lines = [f"/* {spec.name} 0x{spec.id:02x}, {spec.direction.replace('_', ' ')}: {spec.doc} */",
             "typedef struct {"]
    for f in spec.fields:
        if f.is_array:
            limit = f"TAG_{spec.name}_{f.name.upper()}_MAX_COUNT"
            lines.append(f"    uint8_t {f.name}_count;")
            lines.append(f"    {_C_TYPES[f.element]} {f.name}[{limit}];{_c_comment(f.doc)}")
        elif f.element == "str16":
            lines.append(f"    char {f.name}[TAG_STR_LEN];{_c_comment(f.doc)}")
        else:
            lines.append(f"    {_C_TYPES[f.element]} {f.name};{_c_comment(f.doc)}")
    if not spec.fields:
        lines.append("    uint8_t unused; /* C99 has no empty structs */")
    lines.append(f"}} tag_{lower}_t;")
    return lines


def _c_pack(spec: MessageSpec) -> list[str]:
    lower, array = spec.name.lower(), spec.array
    returns = "its length" + ("; 0 if the array count is invalid" if array else "")
    lines = [f"/* Write a {spec.name} body to body[TAG_{spec.name}_BODY_MAX], return {returns}. */",
             f"static inline size_t tag_{lower}_pack(const tag_{lower}_t *m, uint8_t *body)",
             "{", "    size_t n = 0;"]
    if not spec.fields:
        lines += ["    (void)m;", "    (void)body;"]
    if array:
        count, prefix = f"m->{array.name}_count", f"TAG_{spec.name}_{array.name.upper()}"
        lines += ["    uint8_t i;",
                  f"    if ({count} > {prefix}_MAX_COUNT",
                  f"        || {count} % {prefix}_MULTIPLE != 0) {{",
                  "        return 0;", "    }"]
    for f in spec.scalars:
        put = "str" if f.element == "str16" else f.element
        lines.append(f"    tag_put_{put}(body + n, m->{f.name}); n += {f.size};")
    if array:
        lines += [f"    tag_put_u8(body + n, m->{array.name}_count); n += 1;",
                  f"    for (i = 0; i < m->{array.name}_count; i++) {{",
                  f"        tag_put_{array.element}(body + n, m->{array.name}[i]); "
                  f"n += {array.size};",
                  "    }"]
    return [*lines, "    return n;", "}"]


def _c_unpack(spec: MessageSpec) -> list[str]:
    lower, array = spec.name.lower(), spec.array
    limit = f"TAG_{spec.name}_BODY_MIN" if array else f"TAG_{spec.name}_BODY_SIZE"
    lines = [f"/* Read a {spec.name} body; returns 0, or -1 if its length or a count is wrong. */",
             f"static inline int tag_{lower}_unpack(const uint8_t *body, size_t len, "
             f"tag_{lower}_t *m)",
             "{", "    size_t n = 0;"]
    if array:
        lines.append("    uint8_t i;")
    lines += [f"    if (len {'<' if array else '!='} {limit}) {{", "        return -1;", "    }"]
    if not spec.fields:
        lines += ["    (void)body;", "    (void)n;", "    m->unused = 0;"]
    for f in spec.scalars:
        if f.element == "str16":
            lines.append(f"    tag_get_str(body + n, m->{f.name}); n += {f.size};")
        else:
            lines.append(f"    m->{f.name} = tag_get_{f.element}(body + n); n += {f.size};")
    if array:
        count, prefix = f"m->{array.name}_count", f"TAG_{spec.name}_{array.name.upper()}"
        lines += [f"    {count} = tag_get_u8(body + n); n += 1;",
                  f"    if ({count} > {prefix}_MAX_COUNT",
                  f"        || {count} % {prefix}_MULTIPLE != 0",
                  f"        || len != n + (size_t){count} * {array.size}u) {{",
                  "        return -1;", "    }",
                  f"    for (i = 0; i < {count}; i++) {{",
                  f"        m->{array.name}[i] = tag_get_{array.element}(body + n); "
                  f"n += {array.size};",
                  "    }"]
    return [*lines, "    return 0;", "}"]


def generate_c_header() -> str:
    """Text of tag_proto.h; deterministic (no dates, no paths), so rebuilds are stable."""
    out = [f"/* {HEADER_NAME}: the wire protocol for the tag firmware.",
           f" * Generated by device_sim.protocol from {SPEC_PATH.name}; do not edit. */",
           "#ifndef TAG_PROTO_H", "#define TAG_PROTO_H", "",
           "#include <stddef.h>", "#include <stdint.h>", "",
           f"#define TAG_PROTO_VERSION {PROTOCOL_VERSION}",
           f"#define TAG_PROTO_MAX_PAYLOAD {MAX_PAYLOAD} /* type + seq + body + crc */",
           f"#define TAG_PROTO_MAX_BODY {MAX_BODY}",
           f"#define TAG_PROTO_MAX_FRAME {MAX_FRAME} /* COBS(max payload) + 0x00 delimiter */",
           f"#define TAG_STR_LEN {STR_LEN} /* bytes in a str16 field, NUL-padded ASCII */", "",
           "/* Message types */"]
    for m in MESSAGES.values():
        out.append(f"#define TAG_MSG_{m.name} 0x{m.id:02x}u"
                   f" /* {m.direction.replace('_', ' ')} */")
    out += ["", "/* ERROR.code */"]
    out += [f"#define TAG_ERR_{name} {int(code)}u" for name, code in ErrorCode.__members__.items()]
    out += ["", "/* HELLO.counter_unit: what RESULT.latency counts */"]
    out += [f"#define TAG_COUNTER_{name.upper()} {int(v)}u"
            for name, v in CounterUnit.__members__.items()]
    out += ["", "/* HELLO.logit_type: how to read RESULT.logits */"]
    out += [f"#define TAG_LOGIT_{name.upper()} {int(v)}u"
            for name, v in LogitType.__members__.items()]
    out += ["", "/* Body sizes and limits per message */"]
    for m in MESSAGES.values():
        for key, value in m.constants.items():
            out.append(f"#define TAG_{m.name}_{key} {value}u")
        if m.array:
            prefix = f"TAG_{m.name}_{m.array.name.upper()}"
            out += [f"#define {prefix}_MAX_COUNT {m.array.max_count}u",
                    f"#define {prefix}_MULTIPLE {m.array.multiple_of}u",
                    f"#define TAG_{m.name}_BODY_MIN {m.body_min}u",
                    f"#define TAG_{m.name}_BODY_MAX {m.body_max}u"]
        else:
            out += [f"#define TAG_{m.name}_BODY_SIZE {m.body_min}u",
                    f"#define TAG_{m.name}_BODY_MAX {m.body_max}u"]
    out += ["",
            "/* ---- Link layer: tag_link.h, implemented in tag_link.c ---------------------- */",
            f'#include "{LINK_HEADER.name}" /* needs the constants above */', "",
            "/* ---- Messages: one struct, pack and unpack each ----------------------------- */"]
    for m in MESSAGES.values():
        out += ["", *_c_struct(m), "", *_c_pack(m), "", *_c_unpack(m)]
    out += ["", "#endif /* TAG_PROTO_H */", ""]
    return "\n".join(out)


def _write_if_changed(path: Path, text: str) -> None:
    if not path.exists() or path.read_text(encoding="utf-8") != text:
        path.write_text(text, encoding="utf-8")


def write_c_header(folder: Path) -> Path:
    """Write tag_proto.h and a copy of tag_link.h into folder; return the path of tag_proto.h.

    Either file is left untouched if unchanged, so make does not rebuild.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / HEADER_NAME
    _write_if_changed(path, generate_c_header())
    _write_if_changed(folder / LINK_HEADER.name, LINK_HEADER.read_text(encoding="utf-8"))
    return path
