"""The local simtui server: one per ``$SIMTUI_HOME``, the one owner of the truth.

It holds one connection per host, follows every active job, reconciles, runs the
queue, sends notifications and writes every job state; the CLI, the dashboard and
the library (``simtui.connect()``) are its clients, on a Unix socket (see
protocol.py). It outlives every window and exits when idle; ``kill -9`` of it loses
nothing: the next client starts a new one, which resumes every follower from its
stored offset.
"""
