"""How fast `decode_logs` reads a page of logs, beside the alternatives, on the same body.

    python bench/decode.py           # 1,000-log page, memory for 50,000 logs (~30 s)
    python bench/decode.py --quick   # a smoke run in a few seconds

Contenders, all on the same JSON body (XML: the same logs encoded as XML):
ours JSON, ours XML, pydantic v2 models of the same shape (what the provider's official
client uses), msgspec Structs (the fastest Python decoder: our speed limit), and
`orjson.loads` alone (the floor of any JSON path; it builds dicts, not logs).
Peak memory is measured in a fresh subprocess per contender (peak RSS growth while
decoding), so lxml's and orjson's C allocations count too.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import random
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec
import orjson
import psutil
import pydantic
from pydantic import AliasChoices, BaseModel, ConfigDict, Field

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from infobip_voicelogs import ErrorInfo, Price, Status, VoiceLog, decode_logs, encode_logs

# The same shape in pydantic v2: aliases, Decimal money, aware datetimes.


class PPrice(BaseModel):
    model_config = ConfigDict(frozen=True)
    per_second: Decimal = Field(validation_alias=AliasChoices("pricePerSecond", "pricePerMessage"))
    currency: str


class PStatus(BaseModel):
    model_config = ConfigDict(frozen=True)
    group_id: int = Field(alias="groupId")
    group_name: str = Field(alias="groupName")
    id: int
    name: str
    description: str | None = None
    action: str | None = None


class PError(BaseModel):
    model_config = ConfigDict(frozen=True)
    group_id: int = Field(alias="groupId")
    group_name: str = Field(alias="groupName")
    id: int
    name: str
    description: str | None = None
    permanent: bool | None = None


class PLog(BaseModel):
    model_config = ConfigDict(frozen=True)
    bulk_id: str | None = Field(None, alias="bulkId")
    message_id: str | None = Field(None, alias="messageId")
    to: str | None = None
    from_: str | None = Field(None, alias="from")
    text: str | None = None
    sent_at: pydantic.AwareDatetime | None = Field(None, alias="sentAt")
    done_at: pydantic.AwareDatetime | None = Field(None, alias="doneAt")
    duration: int | None = None
    mccmnc: str | None = Field(None, validation_alias=AliasChoices("mccmnc", "mccMnc"))
    price: PPrice | None = None
    status: PStatus | None = None
    error: PError | None = None


class PResponse(BaseModel):
    results: list[PLog]


# The same shape as msgspec Structs.


class MPrice(msgspec.Struct, frozen=True):
    pricePerSecond: Decimal
    currency: str


class MStatus(msgspec.Struct, frozen=True, rename="camel"):
    group_id: int
    group_name: str
    id: int
    name: str
    description: str | None = None
    action: str | None = None


class MError(msgspec.Struct, frozen=True, rename="camel"):
    group_id: int
    group_name: str
    id: int
    name: str
    description: str | None = None
    permanent: bool | None = None


class MLog(
    msgspec.Struct,
    frozen=True,
    rename={
        "from_": "from",
        "bulk_id": "bulkId",
        "message_id": "messageId",
        "sent_at": "sentAt",
        "done_at": "doneAt",
    },
):
    bulk_id: str | None = None
    message_id: str | None = None
    to: str | None = None
    from_: str | None = None
    text: str | None = None
    sent_at: datetime | None = None
    done_at: datetime | None = None
    duration: int | None = None
    mccmnc: str | None = None
    price: MPrice | None = None
    status: MStatus | None = None
    error: MError | None = None


class MResponse(msgspec.Struct):
    results: list[MLog]


_MSGSPEC = msgspec.json.Decoder(MResponse)


def make_logs(count: int, seed: int = 7) -> list[VoiceLog]:
    """Realistic logs: every field set, varied ids, offsets, prices and statuses."""
    rng = random.Random(seed)
    start = datetime(2026, 11, 26, 9, 0, tzinfo=timezone(timedelta(hours=1)))
    logs = []
    for i in range(count):
        sent = start - timedelta(milliseconds=rng.randrange(48 * 3600 * 1000))
        logs.append(
            VoiceLog(
                bulk_id=f"{rng.getrandbits(128):032x}",
                message_id=f"{rng.getrandbits(128):032x}",
                to=f"4179{rng.randrange(10**7):07d}",
                from_="41793026700",
                text=f"Your verification code is {rng.randrange(10**6):06d}. Message {i}.",
                sent_at=sent,
                done_at=sent + timedelta(milliseconds=rng.randrange(60_000)),
                duration=rng.randrange(120),
                mccmnc="22801",
                price=Price(Decimal(rng.randrange(200)).scaleb(-4), "EUR"),
                status=Status(3, "DELIVERED", 5, "DELIVERED_TO_HANDSET", "Message delivered"),
                error=ErrorInfo(0, "OK", 0, "NO_ERROR", "No Error", False),
            )
        )
    return logs


def contenders(json_body: bytes, xml_body: bytes) -> dict[str, Callable[[], Any]]:
    return {
        "ours JSON": lambda: decode_logs(json_body, "application/json"),
        "ours XML": lambda: decode_logs(xml_body, "application/xml"),
        "pydantic v2": lambda: PResponse.model_validate_json(json_body).results,
        "msgspec": lambda: _MSGSPEC.decode(json_body).results,
        "orjson.loads": lambda: orjson.loads(json_body)["results"],
    }


def xml_floor(xml_body: bytes) -> Callable[[], Any]:
    """Not a decoder: lxml's hardened parse plus reading every element's tag and text.

    Building nothing, it is what any XML path on lxml pays at least, so it shows how close
    to 0.4x our JSON an lxml decoder could come at all.
    """
    from infobip_voicelogs.codec._xml import parse_xml

    return lambda: [(element.tag, element.text) for element in parse_xml(xml_body).iter()]


def best_time(fn: Callable[[], Any], repeat: int) -> float:
    """The best of `repeat` calls: the least disturbed by this noisy machine."""
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return best


def measure_speed(count: int, rounds: int, repeat: int) -> dict[str, float]:
    logs = make_logs(count)
    json_body, xml_body = encode_logs(logs, "json"), encode_logs(logs, "xml")
    fns = contenders(json_body, xml_body)
    for name, fn in fns.items():  # same logs out of every contender, or the race is void
        assert len(fn()) == count, name
    assert decode_logs(json_body, "application/json") == logs
    fns["XML floor"] = xml_floor(xml_body)
    best = dict.fromkeys(fns, float("inf"))
    for _ in range(rounds):  # interleaved, so drift in machine speed hits all alike
        for name, fn in fns.items():
            best[name] = min(best[name], best_time(fn, repeat))
    return {name: count / seconds for name, seconds in best.items()}


def child(name: str, path: str) -> None:
    """Subprocess: peak RSS growth (KiB) while one contender decodes the body in `path`."""
    body = Path(path + (".xml" if name == "ours XML" else ".json")).read_bytes()
    fn = contenders(body, body)[name]
    gc.collect()
    # Linux: writing 5 to clear_refs resets the high-water mark (VmHWM), so the peak below is
    # this decode's, not the imports'.
    Path("/proc/self/clear_refs").write_text("5")
    before = psutil.Process().memory_info().rss // 1024  # KiB
    result = fn()
    peak = _high_water_kib()
    assert len(result) > 0
    print(max(peak - before, 1))


def _high_water_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def measure_memory(count: int) -> dict[str, float]:
    logs = make_logs(count)
    base = tempfile.mktemp(prefix="voicelogs-bench-")
    Path(base + ".json").write_bytes(encode_logs(logs, "json"))
    Path(base + ".xml").write_bytes(encode_logs(logs, "xml"))
    del logs
    try:
        peaks = {}
        for name in contenders(b"", b""):
            out = subprocess.run(
                [sys.executable, __file__, "--child", name, base],
                check=True,
                capture_output=True,
                text=True,
            ).stdout
            peaks[name] = int(out.strip()) / 1024  # KiB -> MiB
        return peaks
    finally:
        os.unlink(base + ".json")
        os.unlink(base + ".xml")


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{cpu}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"pydantic {pydantic.VERSION}, msgspec {msgspec.__version__}, orjson {orjson.__version__}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a small smoke run")
    parser.add_argument("--child", nargs=2, metavar=("NAME", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    page, big = (100, 2_000) if args.quick else (1_000, 50_000)
    rounds, repeat = (3, 5) if args.quick else (7, 10)

    print(machine())
    speed = measure_speed(page, rounds, repeat)
    ours = speed["ours JSON"]
    print(f"\nDecoding a {page:,}-log page (best of {rounds}x{repeat})")
    print(f"{'decoder':<14} {'logs/s':>10} {'vs ours JSON':>13} {'vs pydantic':>12}")
    for name, rate in speed.items():
        print(
            f"{name:<14} {rate:>10,.0f} {rate / ours:>12.2f}x {rate / speed['pydantic v2']:>11.2f}x"
        )
    print(
        "(XML floor: lxml's parse plus each element's tag and text, building nothing: "
        "the least any lxml decoder pays)"
    )

    peaks = measure_memory(big)
    print(f"\nPeak memory decoding {big:,} logs (RSS growth in a fresh process)")
    print(f"{'decoder':<14} {'MiB':>8} {'vs pydantic':>12}")
    for name, mib in peaks.items():
        print(f"{name:<14} {mib:>8.1f} {mib / peaks['pydantic v2']:>11.2f}x")

    verdicts = {
        "JSON >= pydantic v2": speed["ours JSON"] >= speed["pydantic v2"],
        "XML >= 0.4x our JSON": speed["ours XML"] >= 0.4 * ours,
        "JSON peak memory < pydantic's": peaks["ours JSON"] < peaks["pydantic v2"],
    }
    print(
        "\nTargets: " + ", ".join(f"{k}: {'met' if v else 'MISSED'}" for k, v in verdicts.items())
    )


if __name__ == "__main__":
    main()
