"""The RECAP loop as a library: collect, train, label and evaluate through the real LeRobot commands,
the lanes that run two of them at once, the arms the benchmarks compare, and the report.

`pi-star-recap demo` (commands/demo.py) and benchmarks/efficacy.py and mixed_quality.py are thin
front ends over it. It may use sim/ and the model package; the model package never imports it."""
