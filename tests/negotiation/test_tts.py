"""The local engine for real (Debian's espeak-ng) and ElevenLabs at the wire (the official SDK against a fake
server on loopback): negotiation/tts.py. No database."""

from __future__ import annotations

import io
import wave
from collections.abc import Iterator

import numpy as np
import pytest

from negotiation import tts
from tests.fakes.elevenlabs_server import FakeElevenLabs

OFFER = "I can do twelve dollars and fifty cents for the USB-C cable, and that is my best offer today."
KEY = "sk_test_eleven_0123456789abcdef"


def _samples(audio: bytes) -> tuple[np.ndarray, int]:
    with wave.open(io.BytesIO(audio)) as w:
        assert w.getsampwidth() == 2 and w.getnchannels() == 1
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(float), w.getframerate()


def _pitch_hz(audio: bytes) -> float:
    """Median fundamental frequency of the voiced 40 ms frames, by autocorrelation (80–400 Hz)."""
    x, rate = _samples(audio)
    size = int(0.04 * rate)
    found = []
    for start in range(0, len(x) - size, size):
        frame = x[start:start + size] - x[start:start + size].mean()
        if np.sqrt((frame ** 2).mean()) < 500:  # silence
            continue
        ac = np.correlate(frame, frame, mode="full")[size - 1:]
        lo, hi = rate // 400, rate // 80
        lag = lo + int(np.argmax(ac[lo:hi]))
        if ac[lag] > 0.3 * ac[0]:
            found.append(rate / lag)
    return float(np.median(found))


def _speak(text: str, position: int = 0, style: str = "neutral") -> tts.Speech:
    voice, pitch, speed = tts.local_voice(position=position, style=style)
    return tts.espeak_speak(text, voice=voice, pitch=pitch, speed=speed)


def test_the_local_engine_makes_a_wav_that_decodes_with_a_duration_that_fits_the_text() -> None:
    speech = _speak(OFFER)
    samples, rate = _samples(speech.audio)
    seconds = len(samples) / rate
    assert speech.content_type == "audio/wav" and speech.engine == "espeak-ng"
    assert speech.duration_ms == round(1000 * seconds)
    # 17 words at the voice's 165 words a minute is about 6 s; allow for pauses and pace
    assert 3.5 < seconds < 9, seconds
    assert np.abs(samples).max() > 3000  # not silence
    # twice the words, about twice as long
    double = _samples(_speak(OFFER + " " + OFFER).audio)
    assert 1.7 < len(double[0]) / len(samples) < 2.3


def test_each_seller_sounds_different() -> None:
    # the ten palette voices are all different, and a female variant is higher than a male one
    assert len({tts.local_voice(position=i, style="neutral") for i in range(10)}) == 10
    low, high = _pitch_hz(_speak(OFFER, position=9).audio), _pitch_hz(_speak(OFFER, position=7).audio)
    assert high > 1.3 * low, (low, high)
    # a style shifts the default: a rude seller talks faster than a sweet one in the same slot
    rude, sweet = _speak(OFFER, 0, "rude"), _speak(OFFER, 0, "sweet")
    assert rude.duration_ms < sweet.duration_ms


def test_an_admin_override_is_parsed_and_clamped() -> None:
    assert tts.local_voice(position=3, style="rude", override="en-gb+f3 pitch=65 speed=170") == ("en-gb+f3", 65, 170)
    assert tts.local_voice(position=0, style="neutral", override="en-us pitch=400 speed=5") == ("en-us", 99, 80)


def test_a_very_long_reply_is_cut_at_a_sentence_with_a_note() -> None:
    text = " ".join(["We have the best cables in town, certified and tested."] * 40)
    spoken, note = tts.cut(text, 600)
    assert len(spoken) <= 600 and spoken.endswith(".") and text.startswith(spoken)
    assert note == f"spoken: the first {len(spoken)} of {len(text)} characters (MAMS_VOICE_MAX_CHARS)"
    assert tts.cut("short", 600) == ("short", "")
    assert tts.cut("   ", 600) == ("", "")
    assert _speak(spoken).duration_ms < 60_000


@pytest.mark.parametrize(("text", "language"), [
    ("Привет! Я могу отдать кабель за двенадцать долларов.", "ru"),
    ("你好，这根数据线十二美元，这是我的最低价。", "cmn"),
    ("مرحبا، سعر الكابل اثنا عشر دولارا.", "ar"),
    ("Καλημέρα, το καλώδιο κοστίζει δώδεκα δολάρια.", "el"),
])
def test_text_in_another_script_is_spoken_in_its_language(text: str, language: str) -> None:
    speech = _speak(text, position=1)
    assert speech.language == language and speech.voice.startswith(language + "+f3")
    seconds = speech.duration_ms / 1000
    assert 1 < seconds < 12, seconds  # spoken, not spelled letter by letter


@pytest.mark.parametrize("text", ["--help", "-v xx", "🙂🙂🙂", "$12.50!!! ???", "a" * 600, "\u202e\u0000x"])
def test_odd_text_never_crashes(text: str) -> None:
    spoken, _ = tts.cut(text.replace("\u0000", ""), 600)
    speech = _speak(spoken)
    _samples(speech.audio)  # decodes


# --- ElevenLabs at the wire --------------------------------------------------------------------------


@pytest.fixture
def eleven() -> Iterator[FakeElevenLabs]:
    fake = FakeElevenLabs(api_key=KEY)
    fake.start()
    yield fake
    fake.stop()


def test_elevenlabs_is_called_through_the_sdk_with_the_key_in_its_header(eleven: FakeElevenLabs) -> None:
    speech = tts.eleven_speak(OFFER, api_key=KEY, voice_id="TxGEqnHWrfWFTfGW9XjX", model="eleven_multilingual_v2",
                              base_url=eleven.base_url)
    (req,) = eleven.requests
    assert req["path"] == "/v1/text-to-speech/TxGEqnHWrfWFTfGW9XjX"
    assert "output_format=mp3_44100_128" in req["query"]
    assert req["headers"]["xi-api-key"] == KEY
    assert req["body"]["text"] == OFFER and req["body"]["model_id"] == "eleven_multilingual_v2"
    assert KEY not in str(req["body"]) and KEY not in req["query"]
    assert speech.content_type == "audio/mpeg" and speech.audio.startswith(b"\xff\xfb")


def test_elevenlabs_errors_say_whether_to_retry_and_never_carry_the_key(eleven: FakeElevenLabs) -> None:
    eleven.faults = [429, 503]
    for _ in range(2):
        with pytest.raises(tts.TTSError) as err:
            tts.eleven_speak("hi", api_key=KEY, voice_id="v", model="m", base_url=eleven.base_url)
        assert err.value.transient and KEY not in str(err.value)
    with pytest.raises(tts.TTSError) as err:
        tts.eleven_speak("hi", api_key="wrong-key", voice_id="v", model="m", base_url=eleven.base_url)
    assert not err.value.transient and "401" in str(err.value) and "wrong-key" not in str(err.value)
    dead = FakeElevenLabs(api_key=KEY)  # bound, never served: the connection is refused
    url = dead.base_url
    dead.server.server_close()
    with pytest.raises(tts.TTSError) as err:
        tts.eleven_speak("hi", api_key=KEY, voice_id="v", model="m", base_url=url, timeout=2)
    assert err.value.transient
