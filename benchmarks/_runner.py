"""Discover the asv-style benchmark classes and run each of them once, in this process.

What asv would do, minus the environments and the history: for every class in
the ``bench_*`` modules and every combination of its ``params``, call
``setup(*params)``, then each benchmark method, then ``teardown(*params)``.

* ``time_*``: one warm-up call, then ``repeat`` samples (``common.measure``; a
  fast call is repeated within a sample, calibrated as asv's ``number=0``);
* ``track_*``: the value returned, with the method's ``unit``;
* ``peakmem_*``: run in a fresh child process (``python -m benchmarks
  --child-peakmem``), whose peak RSS after ``setup`` and the method is the
  figure, as asv measures it in its own benchmark process. The child reads
  its own ``VmHWM`` (the high-water mark of the memory it has since ``exec``):
  its ``ru_maxrss`` would include this large parent's size at the fork.

``setup`` raising ``NotImplementedError`` skips the combination (asv's
convention) with its message as the reason; any other exception is recorded
as an error. Unlike asv, ``setup`` runs once per combination, not once per
method, so the methods of a combination share its data.
"""

import importlib
import inspect
import itertools
import json
import os
import pkgutil
import resource
import subprocess
import sys
import time
import traceback
from pathlib import Path

PACKAGE = "benchmarks"
ROOT = Path(__file__).resolve().parent.parent
KINDS = {"time_": "time", "track_": "track", "peakmem_": "peakmem"}
# The machine's limits run first: every "% of peak" needs them.
MODULE_ORDER = ("bench_machine", "bench_epoch", "bench_kernels", "bench_peers", "bench_compile", "bench_memory",
                "bench_solvers")


def discover():
    """``[(module name, class)]`` of every benchmark class, the modules in ``MODULE_ORDER`` first."""
    package = importlib.import_module(PACKAGE)
    names = [info.name for info in pkgutil.iter_modules(package.__path__) if info.name.startswith("bench_")]
    names.sort(key=lambda name: (MODULE_ORDER.index(name) if name in MODULE_ORDER else len(MODULE_ORDER), name))
    found = []
    for name in names:
        module = importlib.import_module(f"{PACKAGE}.{name}")
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ == module.__name__ and benchmark_methods(cls):
                found.append((name, cls))
    # Keep the classes of a module in the order it defines them.
    found.sort(key=lambda entry: (names.index(entry[0]), inspect.getsourcelines(entry[1])[1]))
    return found


def benchmark_methods(cls):
    """The names of ``cls``'s benchmark methods, in definition order."""
    return [name for name, value in vars(cls).items() if callable(value) and kind_of(name)]


def kind_of(name):
    """``"time"``, ``"track"``, ``"peakmem"`` or ``None``, from a method's name."""
    return next((kind for prefix, kind in KINDS.items() if name.startswith(prefix)), None)


def parameter_sets(cls):
    """Every combination of ``cls.params`` as a tuple (one empty tuple for an unparametrised class)."""
    params = getattr(cls, "params", [])
    if not params:
        return [()]
    if not isinstance(params[0], (list, tuple)):  # asv accepts a flat list for a single parameter
        params = [params]
    return list(itertools.product(*params))


def _selected_methods(module_name, cls, selected):
    return [m for m in benchmark_methods(cls) if selected(f"{module_name}.{cls.__name__}.{m}")]


def run(classes, progress=lambda line: None, selected=lambda benchmark_id: True):
    """Run every class; returns ``(records, other_cpus_before)``.

    One record (a dict) per combination and method, in order; and how many CPUs
    other processes kept busy in the second before the run (``None`` if unknown).
    ``selected(id)`` (an id is ``"module.Class.method"``) picks which methods run.
    """
    records = []
    total = sum(len(parameter_sets(cls)) * len(_selected_methods(name, cls, selected)) for name, cls in classes)
    # A first window of the other processes' load, before anything runs.
    history = [cpu_counters()]
    time.sleep(LOAD_WINDOW)
    history.append(cpu_counters())
    idle_load, _ = _recent_other_cpus(history)
    progress(f"other processes kept {idle_load if idle_load is not None else float('nan'):.2f} CPUs busy "
             f"over the {LOAD_WINDOW:g} s before the run")
    for module_name, cls in classes:
        methods = _selected_methods(module_name, cls, selected)
        if not methods:
            continue
        names = list(getattr(cls, "param_names", []))
        for params in parameter_sets(cls):
            for record in _run_combination(module_name, cls, methods, names, params):
                history.append(cpu_counters())
                record["other_cpus"], record["other_cpus_window_s"] = _recent_other_cpus(history)
                records.append(record)
                progress(f"[{len(records):>3}/{total}] {_progress_line(record)}")
    return records, idle_load


def _run_combination(module_name, cls, methods, names, params):
    instance = cls()
    in_process = [m for m in methods if kind_of(m) != "peakmem"]
    status, reason = "ok", None
    started = time.perf_counter()
    if in_process and hasattr(instance, "setup"):
        status, reason = _call(instance.setup, params)
    setup_seconds = time.perf_counter() - started
    try:
        for method in methods:
            record = {
                "benchmark": f"{module_name}.{cls.__name__}.{method}",
                "module": module_name, "class": cls.__name__, "method": method, "kind": kind_of(method),
                "table": getattr(cls, "table", module_name), "params": dict(zip(names, params)),
                "param_values": list(params),
            }
            started = time.perf_counter()
            if kind_of(method) == "peakmem":
                record.update(_peakmem_in_child(module_name, cls.__name__, method, params))
            elif status != "ok":
                record.update(status=status, reason=reason)
            else:
                record.update(_measure(cls, getattr(instance, method), params))
            record["wall_seconds"] = time.perf_counter() - started
            record["setup_seconds"] = setup_seconds
            record["info"] = _describe(instance, method, params)
            yield record
    finally:
        if status == "ok" and in_process and hasattr(instance, "teardown"):
            _call(instance.teardown, params)


def cpu_counters():
    """``(wall s, CPU-busy s of the whole machine, CPU s of this process and its waited-for children)``.

    The machine's busy time (``/proc/stat``: user, nice, system, irq, softirq
    and steal, the time the hypervisor gave to others) is ``None`` without /proc.
    """
    try:
        with open("/proc/stat") as stat:
            user, nice, system, idle, iowait, irq, softirq, steal = map(int, stat.readline().split()[1:9])
        busy = (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError):
        busy = None
    own = os.times()
    return time.perf_counter(), busy, own.user + own.system + own.children_user + own.children_system


#: The clocks tick every 10 ms: the other processes' load is taken over at least this many seconds.
LOAD_WINDOW = 1.0


def _recent_other_cpus(history):
    """CPUs that other processes kept busy, on average, over the last ``LOAD_WINDOW`` s or more: ``(cpus, s)``.

    The window ends now (``history[-1]``) and starts at the latest snapshot at
    least ``LOAD_WINDOW`` s before (so it spans the whole of a longer row). On a
    small machine a benchmark on all threads needs every CPU: a thread that
    waits for a busy CPU stalls the others at the next barrier.
    """
    now = history[-1]
    start = next((snapshot for snapshot in reversed(history) if snapshot[0] <= now[0] - LOAD_WINDOW), history[0])
    wall = now[0] - start[0]
    if start[1] is None or now[1] is None or wall < LOAD_WINDOW / 4:
        return None, wall
    return max(0.0, (now[1] - start[1]) - (now[2] - start[2])) / wall, wall


def _call(fn, params):
    """Call ``fn(*params)``; ``("ok", None)``, ``("skipped", reason)`` or ``("error", traceback)``."""
    try:
        fn(*params)
    except NotImplementedError as exc:
        return "skipped", str(exc) or "not implemented"
    except Exception:  # noqa: BLE001 - a benchmark's failure is recorded, not fatal
        return "error", traceback.format_exc()
    return "ok", None


def _measure(cls, method, params):
    """One time or track measurement of a bound ``method`` as a partial record."""
    from . import common

    try:
        if kind_of(method.__name__) == "track":
            return {"status": "ok", "value": method(*params), "unit": getattr(method, "unit", "")}
        repeat = getattr(cls, "repeat", common.REPEAT)  # asv also allows a (min, max, time) tuple
        repeat = repeat if isinstance(repeat, int) and repeat > 0 else common.REPEAT
        timing = common.measure(lambda: method(*params), repeat=repeat, number=getattr(cls, "number", 0))
        return {"status": "ok", "unit": "seconds", **timing, "stats": common.statistics(timing["samples"])}
    except NotImplementedError as exc:
        return {"status": "skipped", "reason": str(exc)}
    except Exception:  # noqa: BLE001
        return {"status": "error", "reason": traceback.format_exc()}


def _describe(instance, method, params):
    """The class's own description of a row (label, dtype, threads, FLOP...), or ``{}``."""
    describe = getattr(instance, "describe", None)
    if describe is None:
        return {}
    try:
        return describe(method, *params)
    except Exception:  # noqa: BLE001 - a row without a description is still a row
        return {"describe_error": traceback.format_exc(limit=2)}


def _progress_line(record):
    params = ", ".join(str(value) for value in record["param_values"])
    head = f"{record['benchmark']}({params}) [{record['wall_seconds']:.1f} s]"
    if record["status"] != "ok":
        first_line = (record.get("reason") or "").strip().splitlines()
        return f"{head}: {record['status']}: {first_line[-1] if first_line else ''}"
    if record["kind"] == "time":
        return f"{head}: median {record['stats']['median'] * 1e3:.4g} ms ({record['number']} call(s) per sample)"
    if record["kind"] == "peakmem":
        return f"{head}: peak {record['value'] / 1e6:.1f} MB"
    return f"{head}: {record['value']:.4g} {record['unit']}"


# -- peakmem in a child process ---------------------------------------------------------------------

def _peakmem_in_child(module_name, class_name, method, params):
    """Run one ``peakmem_`` benchmark in a fresh ``python -m benchmarks --child-peakmem`` process."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    command = [sys.executable, "-m", PACKAGE, "--child-peakmem", f"{module_name}.{class_name}.{method}",
               "--child-params", json.dumps(list(params))]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    try:
        return json.loads(done.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        return {"status": "error", "reason": f"the child exited with {done.returncode}: {done.stderr[-2000:]}"}


def child_peakmem(benchmark_id, params_json):
    """The child's side: setup, the method, then print ``{"status", "value": peak RSS bytes, ...}`` as JSON."""
    from . import common

    module_name, class_name, method = benchmark_id.split(".")
    params = tuple(json.loads(params_json))
    instance = getattr(importlib.import_module(f"{PACKAGE}.{module_name}"), class_name)()
    status, reason = _call(getattr(instance, "setup", lambda *p: None), params)
    result = {"status": status, "reason": reason}
    if status == "ok":
        before = common.proc_kilobytes_field("/proc/self/status", "VmHWM")
        status, reason = _call(getattr(instance, method), params)
        peak = common.proc_kilobytes_field("/proc/self/status", "VmHWM")
        if peak is None:  # no /proc: ru_maxrss (KiB on Linux), which may include the parent's size
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        result = {"status": status, "reason": reason, "unit": "bytes", "value": peak,
                  "peak_before_method": before}
    print(json.dumps(result))
    return 0
