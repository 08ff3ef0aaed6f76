"""Is a video complete? Damage that decoders pass over silently, found two ways: the frame
count its container declares (AVI header, MP4/MOV video track) against the frames decoded, and
ffmpeg's own decoding errors from a second decode beside the reader (``DecodeCheck``).
"""

from __future__ import annotations

import os
from pathlib import Path

from ...errors import DataError
from .jobs import Job


def decode_problem(
    job: Job, frames: int, declared: int | None, errors: list[str], problem: DataError | None
) -> DataError | None:
    """One line saying how far decoding got, or None when nothing went wrong."""
    short = declared is not None and frames < declared
    if problem is None and not errors and not short:
        return None
    parts = [str(problem)] if problem is not None else [f"{job.path}: video damaged or incomplete"]
    parts.append(
        f"decoded {frames} of the {declared} frames its container declares"
        if declared is not None
        else f"decoded {frames} frame(s)"
    )
    if errors:
        parts.append(f"ffmpeg: {len(errors)} decoding error(s), first: {errors[0]}")
    return DataError(f"{'; '.join(parts)}; kept the {frames} frame(s) read")


class DecodeCheck:
    """ffmpeg decoding the video's first stream on its own, beside predict's reader, with
    errors logged to a file: imageio's reader decodes through damage without a word, so a
    corrupt video would otherwise pass as good. Runs in its own session (a Ctrl-C goes to
    predict, which stops it)."""

    def __init__(self, path: Path):
        import subprocess
        import tempfile

        self.log = tempfile.TemporaryFile()  # noqa: SIM115 - closed in close()
        try:
            import imageio_ffmpeg

            cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-nostdin", "-v", "error", "-i", str(path)]
            cmd += ["-map", "0:v:0", "-f", "null", "-"]
            self.proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=self.log,
                start_new_session=True,
            )
        except (ImportError, OSError, RuntimeError):
            self.proc = None

    def close(self, wait: bool) -> list[str]:
        """ffmpeg's error lines (``wait``: after it finished; else it is stopped, no lines)."""
        import re
        import subprocess

        lines: list[str] = []
        if self.proc is not None:
            if wait:
                try:
                    self.proc.wait(timeout=600)
                except subprocess.TimeoutExpired:
                    wait = False
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            if wait:
                self.log.seek(0)
                text = self.log.read().decode("utf-8", "replace")
                lines = [re.sub(r" @ 0x[0-9a-fA-F]+", "", ln).strip() for ln in text.splitlines() if ln.strip()]
        self.log.close()
        return lines


def declared_frame_count(path: Path) -> int | None:
    """The frame count the container's header declares (AVI ``avih``/``dmlh``, MP4/MOV the
    video track's sample table), or None when there is none or it cannot be read."""
    import struct

    try:
        with open(path, "rb") as fh:
            head = fh.read(12)
            if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
                fh.seek(0)
                block = fh.read(1 << 16)
                for tag, at in ((b"dmlh", 8), (b"avih", 8 + 16)):
                    i = block.find(tag)
                    if i >= 0 and i + at + 4 <= len(block):
                        n = struct.unpack("<I", block[i + at : i + at + 4])[0]
                        if n:  # ffmpeg leaves dmlh at 0 below 1 GB
                            return n
                return None
            if head[4:8] in (b"ftyp", b"moov", b"mdat", b"free", b"wide", b"skip"):
                return _mp4_video_samples(fh, os.fstat(fh.fileno()).st_size)
    except (OSError, struct.error, ValueError):
        return None
    return None


def _mp4_video_samples(fh, size: int) -> int | None:
    import struct

    def boxes(start: int, end: int):
        pos = start
        while pos + 8 <= end:
            fh.seek(pos)
            n, kind = struct.unpack(">I4s", fh.read(8))
            head = 8
            if n == 1:
                n, head = struct.unpack(">Q", fh.read(8))[0], 16
            elif n == 0:
                n = end - pos
            if n < head or pos + n > end:
                return
            yield kind, pos + head, pos + n
            pos += n

    def child(start: int, end: int, kind: bytes):
        return next(((s, e) for k, s, e in boxes(start, end) if k == kind), None)

    moov = child(0, size, b"moov")
    for kind, s, e in boxes(*moov) if moov else ():
        if kind != b"trak":
            continue
        mdia = child(s, e, b"mdia")
        hdlr = child(*mdia, b"hdlr") if mdia else None
        if hdlr is None:
            continue
        fh.seek(hdlr[0] + 8)
        if fh.read(4) != b"vide":
            continue
        minf = child(*mdia, b"minf")
        stbl = child(*minf, b"stbl") if minf else None
        table = (child(*stbl, b"stsz") or child(*stbl, b"stz2")) if stbl else None
        if table is None:
            return None
        fh.seek(table[0] + 8)
        n = struct.unpack(">I", fh.read(4))[0]
        return n or None
    return None
