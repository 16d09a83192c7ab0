"""``lic info``: the header of .lic file(s), as text or JSON."""

from __future__ import annotations

import json
import os


def cmd_info(args) -> int:
    from ..coding.codec import info_dict
    from ..coding import container

    paths = ([os.path.join(args.input, n) for n in sorted(os.listdir(args.input)) if n.endswith(".lic")]
             if os.path.isdir(args.input) else [args.input])
    out = []
    for p in paths:
        with open(p, "rb") as f:
            data = f.read()
        header, _ = container.unpack(data)
        d = {"file": p, **info_dict(header, len(data))}
        out.append(d)
        if not args.json:
            q = f" q{d['quality']}" if d["quality"] else ""
            lam = f", lambda {d['lambda']:g}" if d["lambda"] is not None else ""
            print(f"{p}: .lic v{d['format_version']}, {d['model']}{q}{lam} (weights {d['fingerprint']}), "
                  f"{d['width']}x{d['height']} {'grey' if d['channels'] == 1 else 'RGB'} {d['bit_depth']}-bit, "
                  f"coder {d['coder']}, {'portable' if d['portable'] else 'not portable (float entropy path)'}, "
                  + (f"{d['iterations']} iterations, segments {d['stream_lengths']} bytes, ending at byte offsets "
                     f"{d['iteration_offsets']}, " if "iterations" in d else f"streams {d['stream_lengths']} bytes, ")
                  + f"{d['file_bytes']} bytes ({d['container_bytes']} container), {d['bpp']:.4f} bpp")
    if args.json:
        print(json.dumps(out if len(out) != 1 or os.path.isdir(args.input) else out[0], indent=2))
    return 0
