"""Video files (MP4 via imageio-ffmpeg's ffmpeg binary) and folders of frames: numpy (T, H, W, 3) uint8 sRGB.

Two encodings:
* ``lossless=True``: H.264 ``libx264rgb`` with ``-qp 0``, RGB stored as is (no YUV conversion, no chroma
  subsampling) -> a bit-exact 8-bit RGB round trip. Not playable by most browsers; used for dataset storage.
* ``lossless=False`` (default): H.264 ``libx264`` ``yuv420p`` CRF 18 with ``+faststart`` -> plays in browsers
  and players. yuv420p needs even width and height, so an odd-sized video is padded by one row and/or
  column that repeats the last row/column (edge replication); the file is then (H+1) and/or (W+1) in size.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from neural_render.errors import NeuralRenderError
from neural_render.io.atomic import atomic_path

FRAME_SUFFIXES = (".png", ".jpg", ".jpeg")
DEFAULT_FPS = 24.0
LOSSY_CRF = 18


def _read_frame_folder(folder: Path, fps: float) -> tuple[np.ndarray, float]:
    from neural_render.io.image import read_image

    files = sorted(f for f in folder.iterdir() if f.is_file() and f.suffix.lower() in FRAME_SUFFIXES)
    if not files:
        raise NeuralRenderError(f"folder holds no frames ({', '.join(FRAME_SUFFIXES)})", folder)
    frames = [read_image(f) for f in files]
    size = frames[0].shape
    for f, frame in zip(files, frames):
        if frame.shape != size:
            raise NeuralRenderError(f"frame is {frame.shape[1]}x{frame.shape[0]} but {files[0].name} is "
                                    f"{size[1]}x{size[0]}", f)
    return np.stack(frames), float(fps)


def read_video(path: str | os.PathLike, default_fps: float = DEFAULT_FPS) -> tuple[np.ndarray, float]:
    """Read a video file, or a folder of frames (png/jpg sorted by file name) -> ((T, H, W, 3) uint8, fps).

    ``default_fps`` is used for folders and for files that carry no usable frame rate.
    Missing, empty (0 frames), truncated, corrupt or non-video files raise :class:`NeuralRenderError` naming
    ``path``. Truncation is caught two ways: ffmpeg's demuxer/decoder errors (``partial file``, ``moov atom not
    found``, ``Invalid data found``, ...) and fewer decoded frames than the container promises (MP4/MOV: the video
    track's sample count, exact; other containers or edited MP4s: duration x fps, an estimate with a frame of slack).
    """
    import imageio_ffmpeg

    p = Path(path)
    if p.is_dir():
        return _read_frame_folder(p, default_fps)
    if not p.is_file():
        raise NeuralRenderError("no such video file or frame folder", path)
    if p.stat().st_size == 0:
        raise NeuralRenderError("video file is empty (0 bytes)", path)
    cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-nostdin", "-nostats", "-i", os.fspath(p),
           "-pix_fmt", "rgb24", "-vcodec", "rawvideo", "-f", "image2pipe", "-"]
    try:
        data, log, code = _run_ffmpeg(cmd)
    except OSError as err:
        raise NeuralRenderError(f"could not run ffmpeg: {err}", path) from err
    errors = [line.strip() for m in _FATAL_LOG for line in log if m in line.lower()]  # most telling first
    header = _parse_header(log)
    if code != 0 or header is None:
        reason = next(iter(errors), None) or next((ln.strip() for ln in reversed(log) if ln.strip()), f"exit {code}")
        raise NeuralRenderError(f"not a readable video: {_strip_tag(reason)}", path)
    width, height, fps, duration = header
    frame_bytes = width * height * 3
    if frame_bytes == 0 or len(data) % frame_bytes:
        raise NeuralRenderError(f"not a readable video: ffmpeg output {len(data)} bytes, not whole {width}x{height} "
                                "RGB frames", path)
    count = len(data) // frame_bytes
    decoded = count - _final_stat(log, "dup") + _final_stat(log, "drop")  # before ffmpeg's frame-rate fixing
    if count == 0:
        raise NeuralRenderError("video has no frames" + (f" ({_strip_tag(errors[0])})" if errors else ""), path)
    fps = fps if fps is not None and math.isfinite(fps) and fps > 0 else float(default_fps)
    expected = mp4_frame_count(p)
    if expected is None and duration:
        expected = (duration * fps, False)
    short = ""
    if expected is not None:
        n, exact = expected
        slack = 0 if exact else 1 + int(0.005 * fps + 0.001 * n)  # duration printed to 0.01 s, fps to 4 digits
        if decoded < round(n) - slack:
            short = f"{decoded} of {'' if exact else 'about '}{round(n)} frames decoded"
    if short or errors:
        detail = f"ffmpeg: {_strip_tag(errors[0])}" if errors else ""
        if short:
            reason = f"truncated: {short}" + (f" ({detail})" if detail else "")
        else:
            reason = f"corrupt or truncated: {detail}"
        raise NeuralRenderError(reason, path)
    frames = np.frombuffer(data, dtype=np.uint8).reshape(count, height, width, 3)
    return frames, float(fps)


#: ffmpeg log messages (lower case) that mean the file is truncated or damaged.
_FATAL_LOG = ("partial file", "moov atom not found", "invalid data found", "invalid nal unit size",
              "error splitting the input", "error reading header", "error opening input")


def _final_stat(log: list[str], key: str) -> int:
    """``dup=`` / ``drop=`` of ffmpeg's last progress line (frames repeated / dropped to keep a constant rate)."""
    import re
    for line in reversed(log):
        if line.startswith("frame="):
            found = re.search(rf"\b{key}=\s*(\d+)", line)
            return int(found[1]) if found else 0
    return 0


def _strip_tag(line: str) -> str:
    """'[in#0/mov,mp4 @ 0x55] stream 0: partial file' -> 'stream 0: partial file'."""
    import re
    return re.sub(r"^(\[[^\]]*\]\s*)+", "", line.strip())


def _run_ffmpeg(cmd: list[str]) -> tuple[bytearray, list[str], int]:
    """Run ffmpeg -> (stdout bytes, stderr lines, exit code); stderr is drained on a thread (no pipe stall)."""
    import subprocess
    import threading

    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    err_chunks: list[bytes] = []
    drain = threading.Thread(target=lambda: err_chunks.extend(iter(lambda: proc.stderr.read(65536), b"")), daemon=True)
    drain.start()
    data = bytearray()
    try:
        while chunk := proc.stdout.read(1 << 20):
            data += chunk
        code = proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        drain.join()
        proc.stdout.close()
        proc.stderr.close()
    text = b"".join(err_chunks).decode("utf-8", "replace").replace("\r", "\n")
    return data, text.splitlines(), code


def _parse_header(log: list[str]) -> tuple[int, int, float | None, float | None] | None:
    """(output width, height, input fps, duration s) from ffmpeg's stream listing, or None without a video output."""
    import re

    out_at = next((i for i, line in enumerate(log) if line.startswith("Output #")), None)
    if out_at is None:
        return None
    stream = [line for line in log[:out_at] if line.lstrip().startswith("Stream ") and " Video: " in line]
    output = [line for line in log[out_at:] if line.lstrip().startswith("Stream ") and " Video: " in line]
    size = re.search(r" (\d+)x(\d+)[, ]", output[0]) if output else None
    if size is None:
        return None
    fps = re.search(r" (\d+(?:\.\d+)?) fps", stream[0]) if stream else None
    dur = next((re.search(r"Duration: (\d+):(\d\d):(\d\d(?:\.\d+)?)", line) for line in log[:out_at]
                if "Duration: " in line), None)
    seconds = 3600 * int(dur[1]) + 60 * int(dur[2]) + float(dur[3]) if dur else None
    return int(size[1]), int(size[2]), float(fps[1]) if fps else None, seconds


_MP4_CONTAINERS = (b"moov", b"trak", b"mdia", b"minf", b"stbl", b"edts")
_MAX_MOOV = 256 << 20


def _boxes(data: bytes, start: int, end: int):
    """(type, payload start, box end) of the ISO-BMFF boxes in data[start:end]; stops at a malformed box."""
    import struct
    pos = start
    while pos + 8 <= end:
        size, kind = struct.unpack(">I4s", data[pos:pos + 8])
        head = 8
        if size == 1:
            if pos + 16 > end:
                return
            size, head = struct.unpack(">Q", data[pos + 8:pos + 16])[0], 16
        elif size == 0:
            size = end - pos
        if size < head or pos + size > end:
            return
        yield kind, pos + head, pos + size
        pos += size


def _find_moov(path: Path) -> bytes | None:
    import struct
    size_total = path.stat().st_size
    with open(path, "rb") as fh:
        pos = 0
        while pos + 8 <= size_total:
            fh.seek(pos)
            head = fh.read(16)
            size, kind = struct.unpack(">I4s", head[:8])
            if pos == 0 and kind not in (b"ftyp", b"moov", b"mdat", b"free", b"skip", b"wide", b"pnot"):
                return None  # not an ISO-BMFF (MP4/MOV) file
            if size == 1 and len(head) == 16:
                size = struct.unpack(">Q", head[8:16])[0]
            elif size == 0:
                size = size_total - pos
            if size < 8:
                return None
            if kind == b"moov":
                if size > _MAX_MOOV or pos + size > size_total:
                    return None
                fh.seek(pos)
                return fh.read(size)
            pos += size
    return None


def mp4_frame_count(path: Path) -> tuple[float, bool] | None:
    """Frames an MP4/MOV promises for its one video track: (count, exact) or None when unknown.

    Exact: the track's sample count, when its edit list (if any) shows the whole track. An edit list that trims
    the track gives an estimate: edited duration x the track's mean frame rate.
    """
    import struct
    try:
        moov = _find_moov(path)
        if moov is None:
            return None
        top = list(_boxes(moov, 0, len(moov)))
        if not top or top[0][0] != b"moov":
            return None
        _, m0, m1 = top[0]
        tracks, movie_scale = [], None
        for kind, a, b in _boxes(moov, m0, m1):
            if kind == b"mvex":
                return None  # fragmented MP4: samples live in the fragments
            if kind == b"mvhd":
                movie_scale = struct.unpack(">I", moov[a + (20 if moov[a] == 1 else 12):][:4])[0]
            if kind == b"trak":
                info: dict = {}
                _walk_trak(moov, a, b, info)
                tracks.append(info)
        video = [t for t in tracks if t.get("handler") == b"vide"]
        if len(video) != 1 or not movie_scale:
            return None
        t = video[0]
        samples, scale, duration = t.get("samples"), t.get("scale"), t.get("duration")
        if not samples or not scale or not duration:
            return None
        sample_s = duration / scale / samples
        edits = [(d / movie_scale, m / scale) for d, m in t.get("edits", []) if m != -1]
        if "edits" not in t:
            return float(samples), True
        first = t.get("first_cts", 0) / scale
        if len(edits) == 1:
            seg, start = edits[0]
            if start - first < 0.5 * sample_s and start + seg >= first + duration / scale - 0.5 * sample_s:
                return float(samples), True
        return sum(seg for seg, _ in edits) / sample_s, False
    except (OSError, struct.error, IndexError, ValueError):
        return None


def _walk_trak(data: bytes, start: int, end: int, info: dict) -> None:
    import struct
    for kind, a, b in _boxes(data, start, end):
        if kind in _MP4_CONTAINERS:
            _walk_trak(data, a, b, info)
        elif kind == b"hdlr":  # the first is mdia's (media type); QuickTime adds a data handler in minf
            info.setdefault("handler", data[a + 8:a + 12])
        elif kind == b"mdhd":
            if data[a] == 1:
                info["scale"], info["duration"] = struct.unpack(">IQ", data[a + 20:a + 32])
            else:
                info["scale"], info["duration"] = struct.unpack(">II", data[a + 12:a + 20])
        elif kind in (b"stsz", b"stz2"):
            info["samples"] = struct.unpack(">I", data[a + 8:a + 12])[0]
        elif kind == b"ctts":
            if struct.unpack(">I", data[a + 4:a + 8])[0] > 0:
                info["first_cts"] = struct.unpack(">i" if data[a] == 1 else ">I", data[a + 12:a + 16])[0]
        elif kind == b"elst":
            version, n = data[a], struct.unpack(">I", data[a + 4:a + 8])[0]
            fmt, step = (">Qq", 20) if version == 1 else (">Ii", 12)
            info["edits"] = [struct.unpack(fmt, data[a + 8 + i * step:a + 8 + i * step + step - 4])
                             for i in range(min(n, 1024))]


def _even_padded(frames: np.ndarray) -> np.ndarray:
    """Pad (T, H, W, 3) to even H and W by repeating the last row / column (needed by yuv420p)."""
    pad_h, pad_w = frames.shape[1] % 2, frames.shape[2] % 2
    if not (pad_h or pad_w):
        return frames
    return np.pad(frames, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")


def write_video(path: str | os.PathLike, frames: np.ndarray, fps: float = DEFAULT_FPS, lossless: bool = False,
                owner: str | None = None, preset: str = "medium") -> None:
    """Write (T, H, W, 3) uint8 sRGB frames to an H.264 ``.mp4`` atomically (see module doc for the two encodings).

    fps: frames per second (> 0). Lossy output of odd-sized frames is padded to even size by edge replication.
    owner: the command writing it, stored as the file's ``comment`` metadata (io/output.py recognises it).
    preset: x264's speed preset ("medium"; "veryfast" for previews: same CRF, a larger file, ~3x faster; lossless
    output stays bit-exact whatever the preset).
    """
    import imageio_ffmpeg

    if hasattr(frames, "detach"):
        frames = frames.detach().cpu().numpy()
    frames = np.asarray(frames)
    if Path(path).suffix.lower() != ".mp4":
        raise NeuralRenderError("write_video writes .mp4 files", path)
    if frames.ndim != 4 or frames.shape[3] != 3 or frames.shape[0] < 1 or min(frames.shape[1:3]) < 1:
        raise NeuralRenderError(f"video frames must be a non-empty (T, H, W, 3) array, got {frames.shape}", path)
    if frames.dtype != np.uint8:
        raise NeuralRenderError(f"video frames must be uint8, got {frames.dtype}", path)
    if not (isinstance(fps, (int, float)) and math.isfinite(fps) and fps > 0):
        raise NeuralRenderError(f"fps must be a positive number, got {fps!r}", path)
    if lossless:
        codec, pix_fmt_out = "libx264rgb", "rgb24"
        params = ["-qp", "0", "-preset", preset]
    else:
        frames = _even_padded(frames)
        codec, pix_fmt_out = "libx264", "yuv420p"
        params = ["-crf", str(LOSSY_CRF), "-preset", preset, "-movflags", "+faststart"]
    if owner is not None:
        from neural_render.io.output import marker

        params = params + ["-metadata", f"comment={marker(owner)}"]
    height, width = frames.shape[1:3]
    try:
        with atomic_path(path) as tmp:
            writer = imageio_ffmpeg.write_frames(tmp, (width, height), pix_fmt_in="rgb24", pix_fmt_out=pix_fmt_out,
                                                 fps=float(fps), quality=None, codec=codec, macro_block_size=1,
                                                 ffmpeg_log_level="error", output_params=params)
            try:
                writer.send(None)
                for frame in frames:
                    writer.send(np.ascontiguousarray(frame))
            finally:
                writer.close()
    except NeuralRenderError:
        raise
    except Exception as err:
        raise NeuralRenderError(f"could not encode video: {str(err).splitlines()[0] if str(err) else err!r}",
                                path) from err
