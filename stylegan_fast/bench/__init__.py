"""``stylegan-fast bench``: benchmarks of the ops and the models, one module per concern.

Modules, each importing only those listed before it (tests/test_imports.py checks for cycles):

* :mod:`.baselines`: the backends a benchmark compares, and running code on one of them;
* :mod:`.timing`: timing and memory measurement on the device (CUDA events, medians, peaks);
* :mod:`.records`: the result record of a case, its speedups, and JSON Lines files of records;
* :mod:`.table`: the printed table, one row per record;
* :mod:`.runner`: running a list of cases under a time budget, printing and saving each record;
* :mod:`.op_cases`: the op benchmark's cases, inputs and minimum memory traffic;
* :mod:`.op_bench`: the op benchmark (``stylegan-fast bench``);
* :mod:`.overhead`: host time per call of every op against eager (``--overhead``);
* :mod:`.traffic_meter`: counting the bytes Triton kernels move, in Triton's interpreter;
* :mod:`.traffic`: bytes moved per op against its minimum (``stylegan-fast bench --traffic``);
* :mod:`.model_cases`: the model benchmark's cases, networks and presets;
* :mod:`.model_steps`: what the model benchmark runs: a training step (R1 every step or lazy),
  D's R1 step alone, and generation;
* :mod:`.conv_census`: every convolution of a step, its kind and kernel, flagged where the kernel
  exceeds the layers' (``--model --conv-census``; ``python -m stylegan_fast.bench.conv_census``);
* :mod:`.model_bench`: the model benchmark (``stylegan-fast bench --model``);
* :mod:`.max_batch`: the largest batch that trains within a memory cap (``--max-batch``);
* :mod:`.plot`: bar charts of result files (``--plot``);
* :mod:`.command`: the command-line flags and the choice among the above.

Importing this package imports none of them.
"""
