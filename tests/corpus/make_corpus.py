"""Regenerate the malformed-input corpus (committed beside this script; run from the repository root:
``python tests/corpus/make_corpus.py``). Every file is one way a user's input can be wrong; the
expected sentence fragment for each is in ``expected.json`` (tests/test_reliability_input.py)."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import h5py
import numpy as np

HERE = Path(__file__).parent


def _session(path: Path) -> None:
    """A small valid session file (the base every session mutation starts from)."""
    sys.path.insert(0, str(HERE.parent))
    from helpers import make_session

    from devmodel.procedures.characterize import BurstConfig

    make_session(path, "sim:pcm?devices=512", 6, bursts=BurstConfig(devices_per_level=2, n_reads=8,
                                                                      interval_s=1.0, age_s=100.0),
                 schedule=(20.0, 600.0), seed=1)


def sessions(out: Path) -> dict[str, str]:
    out.mkdir(parents=True, exist_ok=True)
    base = out.parent / "_base.h5"
    if base.exists():
        base.unlink()
    _session(base)
    raw = base.read_bytes()
    exp: dict[str, str] = {}

    def write(name: str, data: bytes, phrase: str) -> None:
        (out / name).write_bytes(data)
        exp[name] = phrase

    def mutate(name: str, phrase: str, fn) -> None:
        p = out / name
        shutil.copyfile(base, p)
        with h5py.File(p, "a") as f:
            fn(f)
        exp[name] = phrase

    write("empty.h5", b"", "not a readable HDF5 file")
    write("text.h5", b"hello, I am not HDF5\n", "not a readable HDF5 file")
    write("truncated_half.h5", raw[: len(raw) // 2], "not a readable HDF5 file")
    write("truncated_header.h5", raw[:96], "not a readable HDF5 file")
    write("random_bytes.h5", np.random.default_rng(0).bytes(4096), "not a readable HDF5 file")
    write("signature_then_garbage.h5", raw[:8] + np.random.default_rng(1).bytes(2048),
          "not a readable HDF5 file")
    corrupt = bytearray(raw)
    corrupt[len(raw) // 3: len(raw) // 3 + 4096] = np.random.default_rng(2).bytes(4096)
    write("corrupted_middle.h5", bytes(corrupt), "")
    with h5py.File(out / "foreign.h5", "w") as f:
        f["x"] = np.arange(3)
    exp["foreign.h5"] = "not a devmodel session file"
    mutate("future_version.h5", "uses session schema version 99", lambda f: f.attrs.__setitem__(
        "schema_version", 99))
    mutate("version_text.h5", "schema_version", lambda f: f.attrs.__setitem__("schema_version", "one"))
    mutate("version_negative.h5", "invalid schema_version -3", lambda f: f.attrs.__setitem__(
        "schema_version", -3))
    mutate("no_reads.h5", "is missing", lambda f: f.__delitem__("reads"))
    mutate("no_devices.h5", "", lambda f: f.__delitem__("devices"))
    mutate("no_technology.h5", "technology", lambda f: f.attrs.__delitem__("technology"))
    mutate("technology_flash.h5", "technology", lambda f: f.attrs.__setitem__("technology", "flash"))
    mutate("g_max_nan.h5", "g_max_us", lambda f: f.attrs.__setitem__("g_max_us", np.nan))
    mutate("g_max_negative.h5", "g_max_us", lambda f: f.attrs.__setitem__("g_max_us", -25.0))
    mutate("bad_chip_json.h5", "chip", lambda f: f["chip"].attrs.__setitem__("json", "{not json"))
    mutate("bad_config_json.h5", "config", lambda f: f["config"].attrs.__setitem__("json", "[1, 2"))
    mutate("n_rows_huge.h5", "n_rows", lambda f: f["reads"].attrs.__setitem__("n_rows", 10**12))
    mutate("n_rows_negative.h5", "n_rows", lambda f: f["reads"].attrs.__setitem__("n_rows", -5))

    def short_column(f):
        g = f["reads/g_us"][()]
        del f["reads/g_us"]
        f["reads/g_us"] = g[: g.size // 2]
    mutate("column_shorter.h5", "reads", short_column)

    def text_column(f):
        n = f["reads/g_us"].shape[0]
        del f["reads/g_us"]
        f["reads/g_us"] = np.array(["x"] * n, dtype="S1")
    mutate("column_text.h5", "reads/g_us", text_column)

    def device_out_of_range(f):
        d = f["reads/device"][()]
        d[3] = 10**6
        f["reads/device"][...] = d
    mutate("device_out_of_range.h5", "reads/device", device_out_of_range)
    mutate("reads_is_dataset.h5", "reads", lambda f: (f.__delitem__("reads"), f.__setitem__("reads",
                                                                                          np.arange(3))))
    mutate("devices_missing_level.h5", "devices", lambda f: f.__delitem__("devices/level"))
    mutate("levels_missing.h5", "", lambda f: f.__delitem__("levels"))
    mutate("bad_params_json.h5", "ground_truth", lambda f: f["ground_truth"].attrs.__setitem__(
        "params_json", "{{"))
    # reliability round two: values that pass every comparison, records that are not objects
    mutate("chip_null.h5", "/chip@json is NoneType, not a JSON object",
           lambda f: f["chip"].attrs.__setitem__("json", "null"))
    mutate("config_list.h5", "/config@json is list, not a JSON object",
           lambda f: f["config"].attrs.__setitem__("json", "[1, 2]"))

    def retype(name: str, phrase: str, col: str, fn) -> None:
        def edit(f):
            d = f[col][()]
            del f[col]
            f[col] = fn(d)
        mutate(name, phrase, edit)

    retype("device_float.h5", "/reads/device holds float64 values", "reads/device", lambda d: d + 0.5)
    retype("device_float_integral.h5", "/reads/device holds float64 values", "reads/device",
           lambda d: d.astype(float))
    retype("time_nan.h5", "/reads/t_s holds 1 non-finite value", "reads/t_s",
           lambda d: np.where(np.arange(d.size) == 5, np.nan, d))
    retype("g_inf.h5", "/reads/g_us holds 1 non-finite value", "reads/g_us",
           lambda d: np.where(np.arange(d.size) == 5, np.inf, d))
    retype("age_negative.h5", "/reads/age_s holds -100 at row 5", "reads/age_s",
           lambda d: np.where(np.arange(d.size) == 5, -100.0, d))
    retype("target_inf.h5", "/devices/target_us holds 1 non-finite value", "devices/target_us",
           lambda d: np.where(np.arange(d.size) == 0, np.inf, d))
    base.unlink()
    return exp


H = "device,target_us,time_s,g_us"  # the required header

TABLES = {
    "empty.csv": ("", "is empty"),
    "only_newlines.csv": ("\n\n\n", "is empty"),
    "header_only.csv": ("device,target_us,time_s,g_us\n", "no data rows"),
    "missing_column.csv": ("device,target_us,time_s\n1,5,20,4.9\n", "missing column 'g_us'"),
    "typo_column.csv": ("device,target_us,time_s,g_uS\n1,5,20,4.9\n", "did you mean 'g_uS'"),
    "duplicate_column.csv": ("device,target_us,time_s,g_us,g_us\n1,5,20,4.9,4.8\n", "appears twice"),
    "ragged.csv": ("device,target_us,time_s,g_us\n1,5,20,4.9\n1,5,60\n", "line 3"),
    "non_numeric.csv": ("device,target_us,time_s,g_us\n1,5,20,abc\n1,5,60,4.8\n", "'abc' is not a number"),
    "nan.csv": ("device,target_us,time_s,g_us\n1,5,20,nan\n1,5,60,4.8\n", "not a finite number"),
    "inf.csv": ("device,target_us,time_s,g_us\n1,5,20,4.9\n1,5,inf,4.8\n", "not a finite number"),
    "overflow.csv": ("device,target_us,time_s,g_us\n1,5,20,1e400\n1,5,60,4.8\n", "not a finite number"),
    "negative_time.csv": ("device,target_us,time_s,g_us\n1,5,-20,4.9\n1,5,60,4.8\n", "must be ≥ 0"),
    # time 0 is the verify read: one read after programming is not enough for drift
    "zero_time.csv": ("device,target_us,time_s,g_us\n1,5,0,4.9\n1,5,60,4.8\n", "1 read(s) after programming"),
    "negative_device.csv": ("device,target_us,time_s,g_us\n-1,5,20,4.9\n-1,5,60,4.8\n", "must be ≥ 0"),
    "fractional_device.csv": ("device,target_us,time_s,g_us\n1.5,5,20,4.9\n1.5,5,60,4.8\n",
                              "is not an integer"),
    "huge_device_1e30.csv": ("device,target_us,time_s,g_us\n1e30,5,20,4.9\n1e30,5,60,4.8\n", "device"),
    "target_above_gmax.csv": ("device,target_us,time_s,g_us\n1,50,20,4.9\n1,50,60,4.8\n",
                              "lies beyond g_max = 25 µS (1 device does)"),
    "two_targets.csv": ("device,target_us,time_s,g_us\n1,5,20,4.9\n1,6,60,4.8\n", "two different targets"),
    "one_read.csv": ("device,target_us,time_s,g_us\n1,5,20,4.9\n", "drift needs at least two"),
    "bad_burst.csv": ("device,target_us,time_s,g_us,burst\n1,5,20,4.9,-5\n1,5,60,4.8,\n", "burst"),
    "bad_converged.csv": ("device,target_us,time_s,g_us,converged\n1,5,20,4.9,2\n1,5,60,4.8,2\n",
                          "must be 0 or 1"),
    "unterminated_quote.csv": ('device,target_us,time_s,g_us\n1,5,20,"4.9\n1,5,60,4.8\n', ""),
    "semicolons.csv": ("device;target_us;time_s;g_us\n1;5;20;4.9\n1;5;60;4.8\n", "missing column"),
    # the optional columns of a lab's table (docs/session-format.md, "Importing a table")
    "nominal_negative.csv": (f"{H},nominal_time_s\n1,5,20,4.9,-20\n1,5,60,4.8,60\n",
                             "column nominal_time_s: -20 must be ≥ 0"),
    "nominal_text.csv": (f"{H},nominal_time_s\n1,5,20,4.9,soon\n1,5,60,4.8,60\n", "'soon' is not a number"),
    "nominal_far_from_time.csv": (f"{H},nominal_time_s\n1,5,20,4.9,2000\n1,5,60,4.8,60\n",
                                  "more than a factor 2 from the read's time_s"),
    "two_verify_readings.csv": (f"{H},g_verify_us\n1,5,20,4.9,5\n1,5,60,4.8,6\n",
                                "has two different verify readings"),
    "verify_text.csv": (f"{H},g_verify_us\n1,5,20,4.9,x\n1,5,60,4.8,x\n", "'x' is not a number"),
    "two_level_labels.csv": (f"{H},level\n1,5,20,4.9,1\n1,5,60,4.8,2\n", "two different level labels"),
    "two_reads_at_time_0.csv": (f"{H}\n1,5,0,4.9\n1,5,0,4.8\n1,5,60,4.8\n1,5,120,4.7\n",
                                "two reads at time 0"),
    "per_device_targets.csv": (f"{H}\n" + "".join(f"{d},{5 + d},{t},{4.9 + d}\n" for d in range(3)
                                                    for t in (20, 60)),
                               "median of 1 device each (per-device targets)"),
    "tsv_ragged.csv": ("device\ttarget_us\ttime_s\tg_us\n1\t5\t20\t4.9\n1\t5\t60\n",
                       "3 cells where the header has 4"),
    "duplicate_rows.csv": (f"{H}\n1,5,20,4.9\n1,5,60,4.8\n1,5,20,4.9\n", "line 4 repeats line 2"),
}


def tables(out: Path) -> dict[str, str]:
    out.mkdir(parents=True, exist_ok=True)
    exp = {}
    for name, (text, phrase) in TABLES.items():
        (out / name).write_text(text, encoding="utf-8")
        exp[name] = phrase
    (out / "binary.csv").write_bytes(np.random.default_rng(3).bytes(2000))
    exp["binary.csv"] = ""
    latin1 = "device,target_us,time_s,g_us,r\u00e9f\n1,5,20,4.9,a\n".encode("latin-1")
    (out / "latin1.csv").write_bytes(latin1)
    exp["latin1.csv"] = "not a UTF-8 text table"
    (out / "nul_bytes.csv").write_bytes(b"device,target_us,time_s,g_us\n1,5,20,4\x009\n1,5,60,4.8\n")
    exp["nul_bytes.csv"] = ""
    (out / "utf16.csv").write_bytes("device,target_us,time_s,g_us\n1,5,20,4.9\n".encode("utf-16"))
    exp["utf16.csv"] = ""
    return exp


def cards(out: Path) -> dict[str, str]:
    out.mkdir(parents=True, exist_ok=True)
    from devmodel.model.card import DeviceModel

    good = json.loads(DeviceModel.published("pcm").to_json())
    exp = {}

    def write(name: str, text: str | bytes, phrase: str) -> None:
        (out / name).write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
        exp[name] = phrase

    def mutate(name: str, phrase: str, fn) -> None:
        d = json.loads(json.dumps(good))
        fn(d)
        write(name, json.dumps(d), phrase)

    write("empty.json", "", "not valid JSON")
    write("not_json.json", "{model: card}", "not valid JSON")
    write("array.json", "[]", "must be a JSON object")
    write("null.json", "null", "must be a JSON object")
    write("no_schema.json", "{}", "not a devmodel model card")
    write("deep_nesting.json", "[" * 100000 + "]" * 100000, "")
    write("binary.json", np.random.default_rng(4).bytes(512), "")
    write("utf16.json", json.dumps(good).encode("utf-16"), "")
    mutate("future_major.json", "devmodel.model/9", lambda d: d.__setitem__("schema", "devmodel.model/9"))
    mutate("schema_garbage.json", "schema", lambda d: d.__setitem__("schema", "devmodel.model/x"))
    mutate("g_max_text.json", "g_max_us", lambda d: d.__setitem__("g_max_us", "high"))
    mutate("g_max_negative.json", "g_max_us", lambda d: d.__setitem__("g_max_us", -5))
    mutate("technology_flash.json", "technology", lambda d: d.__setitem__("technology", "flash"))
    mutate("missing_technology.json", "technology", lambda d: d.pop("technology"))
    write("nan_literal.json", json.dumps(good).replace('"g_max_us": 25.0', '"g_max_us": NaN'), "")
    mutate("poly_empty.json", "", lambda d: d["programming"].__setitem__("poly_coeffs_us", []))
    mutate("poly_text.json", "", lambda d: d["programming"].__setitem__("poly_coeffs_us", ["a", "b"]))
    mutate("drift_missing.json", "", lambda d: d.__setitem__("drift", {"nu_mean": {}}))
    # reliability round two: what the schema's field-by-field checks cannot see
    text = json.dumps(good)
    write("overflow_literal.json", text.replace('"g_max_us": 25.0', '"g_max_us": 1e400'),
          "holds 1e400, which overflows a float")
    write("integer_5000_digits.json", text.replace('"g_max_us": 25.0', '"g_max_us": 1' + "0" * 5000),
          "holds an integer too long to read")
    mutate("g_max_1e300.json", "g_max_us", lambda d: d.__setitem__("g_max_us", 1e300))
    mutate("nu_std_negative.json", "field drift/nu_std/lo: a spread of drift exponents cannot be negative",
           lambda d: d["drift"]["nu_std"].__setitem__("lo", -0.5))
    mutate("clip_inverted.json", "field drift/nu_mean: its lower clip lo = 0.2 exceeds",
           lambda d: d["drift"]["nu_mean"].update(lo=0.2, hi=0.1))
    mutate("spread_negative.json", "the programming spread is negative over the whole range",
           lambda d: d["programming"].__setitem__("poly_coeffs_us", [-5, 0, 0]))
    mutate("spread_absurd.json", "its spread at t0 is 1e+200 µS",
           lambda d: d["programming"].__setitem__("poly_coeffs_us", [1e200, 0, 0]))
    mutate("offset_absurd.json", "outside [0, g_max",
           lambda d: d["programming"].__setitem__("mean_offset_coeffs_us", [1e30]))
    mutate("read_noise_negative.json", "read_noise/q_s_amp",
           lambda d: d["read_noise"].__setitem__("q_s_amp", -0.5))
    return exp


STATIONS = {
    "empty.yaml": ("", "station"),
    "not_yaml.yaml": ("station: [1, 2\n  : :\n", "not valid YAML"),
    "list.yaml": ("- a\n- b\n", "the top level"),
    "no_version.yaml": ("name: bench\n", "'station' is a required property"),
    "version_2.yaml": ("station: 2\n", "station"),
    "unknown_key.yaml": ("station: 1\nlasers: {}\n", "lasers"),
    "negative_limit.yaml": ("station: 1\nchip:\n  limits: {max_amplitude: -5}\n", "max_amplitude"),
    "range_reversed.yaml": ("station: 1\nchip:\n  limits: {address_range: [10, 2]}\n", "address_range"),
    "range_three.yaml": ("station: 1\nchip:\n  limits: {address_range: [1, 2, 3]}\n", "address_range"),
    "bad_driver.yaml": ("station: 1\ninstruments:\n  chip: {driver: flux-capacitor}\n", "driver"),
    "timeout_zero.yaml": ("station: 1\ninstruments:\n  chip: {driver: scpi-chip, timeout_s: 0}\n",
                          "timeout_s"),
    "backend_no_at.yaml": ("station: 1\ninstruments:\n  chip: {driver: scpi-chip, backend: py}\n", "backend"),
    "fault_rate_2.yaml": ("station: 1\ninstruments:\n  chip: {driver: scpi-chip, faults: {drop: 2}}\n",
                          "drop"),
    "faults_sum.yaml": ("station: 1\ninstruments:\n  chip: {driver: scpi-chip, faults: {drop: 0.7, "
                        "timeout: 0.7}}\n", "add up to"),
    "retries_negative.yaml": ("station: 1\ninstruments:\n  chip: {driver: scpi-chip, retries: {attempts: -1}}"
                              "\n", "attempts"),
    "backoff_inverted.yaml": ("station: 1\ninstruments:\n  chip: {driver: scpi-chip, retries: {backoff_s: 5, "
                              "max_backoff_s: 1}}\n", "back-off"),
    "python_tag.yaml": ("station: !!python/object/apply:os.system ['true']\n", "not valid YAML"),
    "tabs.yaml": ("station: 1\ninstruments:\n\tchip: {driver: scpi-chip}\n", "not valid YAML"),
    "huge_address.yaml": ("station: 1\nchip:\n  limits: {address_range: [0, 1e400]}\n", "address_range"),
    "probe_no_devices.yaml": ("station: 1\nprobe_station: {technology: reram, g_max_us: 40}\n", "devices"),
    "limit_nan.yaml": ("station: 1\nchip:\n  limits: {max_amplitude: .nan}\n",
                       "chip.limits.max_amplitude: not a finite number"),
    "limit_inf.yaml": ("station: 1\nchip:\n  limits: {max_amplitude: .inf}\n",
                       "chip.limits.max_amplitude: not a finite number"),
    "timeout_nan.yaml": ("station: 1\ninstruments:\n  chip: {driver: scpi-chip, timeout_s: .nan}\n",
                         "instruments.chip.timeout_s: not a finite number"),
    "alias_in_allowed_key.yaml": ("station: 1\nname: &a bench\ninstruments:\n  chip: {driver: scpi-chip, "
                                  "models: [*a, *a]}\n", "uses a YAML alias (*a) at line 4"),
    "laughs.yaml": ("station: 1\nname: &a [x, x, x, x, x, x, x, x]\n" + "".join(
        f"n{i}: &a{i} [*{'a' if i == 0 else f'a{i - 1}'}, *{'a' if i == 0 else f'a{i - 1}'}, "
        f"*{'a' if i == 0 else f'a{i - 1}'}, *{'a' if i == 0 else f'a{i - 1}'}]\n" for i in range(12)),
        ""),
}


def stations(out: Path) -> dict[str, str]:
    out.mkdir(parents=True, exist_ok=True)
    exp = {}
    for name, (text, phrase) in STATIONS.items():
        (out / name).write_text(text, encoding="utf-8")
        exp[name] = phrase
    (out / "binary.yaml").write_bytes(np.random.default_rng(5).bytes(700))
    exp["binary.yaml"] = ""
    return exp


def main() -> None:
    expected = {"sessions": sessions(HERE / "sessions"), "tables": tables(HERE / "tables"),
                "cards": cards(HERE / "cards"), "stations": stations(HERE / "stations")}
    (HERE / "expected.json").write_text(json.dumps(expected, indent=1, ensure_ascii=False) + "\n",
                                        encoding="utf-8")
    print({k: len(v) for k, v in expected.items()})


if __name__ == "__main__":
    main()
