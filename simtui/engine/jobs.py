"""Jobs end to end: submit (place, record, launch), reconcile, follow, kill, rerun, queue.

The engine keeps the records in step with what each job's folder on its host
says (simtui.hosts.jobs); it returns model objects and never touches a screen.
States: queued -> starting -> running -> succeeded | failed | killed | lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import posixpath
import shlex
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from simtui.config import Config
from simtui.engine.metrics import AT_ONCE, MetricsIngest
from simtui.engine.notify import Notifier
from simtui.engine.machines import Machines
from simtui.engine.pool import HostPool
from simtui.engine.sampler import probe_hosts
from simtui.engine import outputs, runs
from simtui.errors import ConfigError, FileFault, HostDisconnected, HostError, LaunchError, SimtuiError, UsageError
from simtui.hosts import Host, containers, host_class
from simtui.hosts import jobs as remote
from simtui.hosts.base import home_relative
from simtui.hosts.local import this_machine
from simtui.hosts.probe import forget_agent, install_agent
from simtui.model import LOCAL, SWEEP_PREFIX, HostSpec, JobSpec, JobState, Needs, Placement, Record
from simtui.provenance import make_label
from simtui.secret import mask
from simtui.store.logs import LocalLog
from simtui.store.records import Store
from simtui.textsafe import sanitize

logger = logging.getLogger("simtui.engine")
ACTIVE = (JobState.STARTING, JobState.RUNNING)
TAIL_LINES = 20
TAIL_BYTES = 64 * 1024  # enough for the last lines; never read a whole big log for them
RECONNECT_BACKOFF = (0.5, 1.0, 2.0, 4.0, 8.0)  # seconds; the last one repeats
SCHEDULER_LAG = 0.1  # seconds between looks while a job's scheduler has yet to record the end its folder shows


class Engine:
    def __init__(self, config: Config, store: Store, pool: HostPool | None = None) -> None:
        self.config = config
        self.store = store
        self.machines = Machines(self)
        self.pool = pool or HostPool(config, self.host_spec)
        self.notifier = Notifier(config, store, hosts=self.pool.get)
        self.on_change: Callable[[Record], None] | None = None  # hears every record the engine writes
        self.probe = probe_hosts  # samples for placement: (specs, timeout) -> ProbeResults
        self.reachable: Callable[[str], bool] = lambda host: True  # a host known down is not dialled by the queue
        self.poll_soon: Callable[[str], None] | None = None  # the host's poll of its jobs, now (None: do it here)
        self._kills: dict[str, asyncio.Event] = {}  # kills under way, by label: set when each is done
        self.tasks: set[asyncio.Future] = set()  # work that goes on after its caller (a flood's metrics)

    def _background(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def close(self) -> None:
        await self.machines.close()
        if self.tasks:  # a flood's metrics: bounded, the log they come from is kept anyway
            await asyncio.wait(self.tasks, timeout=60)
        await self.notifier.drain()  # sends in flight, bounded: a slow receiver delays exit a little
        await self.pool.close()

    def _update(self, label: str, **fields: Any) -> Record:
        """store.update; a change of state is also told to the notifier (which sends
        each event once, whoever else sees it too)."""
        record = self.store.update(label, **fields)
        if "state" in fields:
            self.notifier.job(record)
        if self.on_change is not None:
            self.on_change(record)
        return record

    # -- submit ----------------------------------------------------------------

    async def submit(self, spec: JobSpec, *, repeat_of: str | None = None,
                     progress: Callable[[int, int], None] | None = None, array: bool = False,
                     stage: Callable[[str], None] | None = None) -> Record:
        """Record the job and start it, unless it waits (``after``, ``max_jobs``).

        A ``sync`` spec syncs its project to the chosen host first (``progress``
        hears of the bytes sent) and runs in a copy of the synced tree; a spec
        with a ``tree`` (a rerun) runs in a copy of that tree (see engine.runs).
        A launch that fails leaves the record failed and raises LaunchError. A
        spec with a ``provider`` runs on a machine made for it (engine.machines)."""
        if spec.after:
            spec = replace(spec, after=self.store.resolve(spec.after))
        if spec.provider:
            return await self.machines.submit(spec, repeat_of, progress, stage)
        host, why = await self._choose_host(spec)
        if "/" in host:  # CLUSTER/PARTITION: a partition of a Slurm host
            host, partition = host.split("/", 1)
            spec = replace(spec, host=spec.host and host, partition=partition)
        host_spec = self.config.host(host)
        now = time.time()
        label = make_label({"argv": list(spec.argv), "host": host, "workdir": spec.workdir, "created": now})
        if spec.sync or spec.tree:
            spec = await runs.prepare(await self.host(host), spec, label, progress)
        workdir = spec.workdir or host_class(host_spec).default_workdir(spec.cwd)
        if spec.require_clean:
            await self._refuse_changes(host, workdir)
        plan = runs.params_plan(spec, spec.params)  # a parameter TOML cannot hold fails here, before a record
        waits = bool(spec.after) and not self._chains(host, spec.after)
        starting = not waits and self._has_slot(host) and self._sweep_has_slot(spec.sweep, spec.max_parallel)
        record = Record(
            label=label, host=host, command=shlex.join(spec.argv),
            state=JobState.STARTING if starting else JobState.QUEUED,
            argv=list(spec.argv), workdir=workdir, tags=list(spec.tags), reason=spec.reason,
            params=dict(spec.params), placement=why, repeat_of=repeat_of, after=spec.after,
            needs=asdict(spec.needs) if not spec.needs.is_empty() else None,
            jobs_dir=host_spec.jobs_dir, created=now, inputs=[{"path": path} for path in spec.inputs],
            outputs_dir=spec.outputs_dir, project=spec.project, git=spec.git, venv=spec.venv,
            spec=spec.to_dict(), sweep=spec.sweep,
            params_file=plan[1] if plan else None, client=runs.this_client() if starting else None,
        )
        self.store.insert(record)
        stored = self.store.get(label)
        if self.on_change is not None:
            self.on_change(stored)
        return await self.start(stored, array=array) if starting else stored

    async def _refuse_changes(self, host_name: str, workdir: str) -> None:
        """UsageError naming the changed files when the workdir's checkout is dirty."""
        host = await self.host(host_name)
        result = await host.run(["git", "-C", home_relative(workdir), "status", "--porcelain"])
        if not result.ok:
            raise UsageError(f"--require-clean: {host_name}:{workdir} is not a git checkout")
        changed = [line[3:] for line in result.stdout.splitlines()]
        if changed:
            shown = ", ".join(changed[:10]) + (f" and {len(changed) - 10} more" if len(changed) > 10 else "")
            raise UsageError(f"--require-clean: {host_name}:{workdir} has uncommitted changes: {shown} "
                             "(commit or stash them, or drop --require-clean)")

    def _chains(self, host: str, after: str) -> bool:
        """Whether a job on ``host`` can wait for ``after`` in the host's own queue."""
        dep = self.store.get(after)
        return not dep.state.finished and host_class(self.host_spec(host)).chains_after(host, dep)

    async def _choose_host(self, spec: JobSpec) -> tuple[str, str | None]:
        if spec.host:
            self.config.host(spec.host.split("/", 1)[0])  # a clear error for an unknown name
            return spec.host, spec.placement
        if spec.needs.is_empty():
            names = [h.name for h in self.config.hosts]
            if LOCAL in names:
                return LOCAL, None
            raise UsageError("give --host HOST or what the job needs (--cpus, --mem, --gpus, ...)")
        from simtui.engine.placement import place

        results = await self.probe(list(self.config.hosts), self.config.defaults.timeout)
        placement = _placed(place(spec.needs, results))
        return placement.host, placement.why

    def _sweep_has_slot(self, sweep: str | None, max_parallel: int | None) -> bool:
        """Fewer than ``max_parallel`` runs of ``sweep`` are active (or there is no such limit)."""
        if not sweep or not max_parallel:
            return True
        return sum(r.sweep == sweep for r in self.active()) < max_parallel

    async def sweep(self, spec: JobSpec, points: list[dict[str, Any]],
                    progress: Callable[[int, int], None] | None = None,
                    stage: Callable[[str], None] | None = None) -> list[Record]:
        """One record per point (its parameters over ``spec.params``), all with one new
        sweep id, submitted in order. Placed by fit one after another: a host whose
        ``max_jobs`` the earlier points took is passed over while another fits."""
        sweep = SWEEP_PREFIX + make_label({"argv": list(spec.argv), "points": points, "created": time.time()})[:10]
        spec = replace(spec, sweep=sweep)
        if spec.provider:  # a machine made for each point
            return await self.machines.sweep(spec, points, progress, stage)
        chosen: list[tuple[str | None, str | None]] = [(spec.host, spec.placement)] * len(points)
        if not spec.host and not spec.needs.is_empty():
            chosen = await self._place_points(spec, len(points))
        where = chosen[0][0]
        if (len(points) > 1 and where and all(c == chosen[0] for c in chosen)
                and host_class(self.config.host(where.split("/", 1)[0])).takes_arrays):
            return await self._sweep_array(spec, points, chosen[0], progress)
        records = []
        for point, (host, why) in zip(points, chosen):
            placed = replace(spec, params={**spec.params, **point}, host=host, placement=why)
            records.append(await self.submit(placed, progress=progress))
        return records

    async def _sweep_array(self, spec: JobSpec, points: list[dict[str, Any]], chosen: tuple[str | None, str | None],
                           progress: Callable[[int, int], None] | None) -> list[Record]:
        """A sweep on a host whose scheduler takes job arrays: each point recorded and
        made ready (its folder, parameters, argv), then one array for all of them."""
        host_name, why = chosen
        ready = [await self.submit(replace(spec, params={**spec.params, **point}, host=host_name, placement=why,
                                           max_parallel=None), progress=progress, array=True)
                 for point in points]
        prepared = [r for r in ready if r.state is JobState.QUEUED and r.pid == 0]
        if prepared:
            first = self.store.get(prepared[0].label)
            host = await self.host(first.host)
            request = self._request(first, JobSpec.from_dict(first.spec or {"argv": ()}))
            try:
                found = await host.submit_array(first.jobs_dir, [r.label for r in prepared], spec.sweep or "sweep",
                                                request, spec.max_parallel, host.spec.share)
            except SimtuiError as err:
                for record in prepared:
                    self._update(record.label, state=JobState.FAILED, ended=time.time(), log_tail=str(err))
                raise LaunchError(prepared[0].label, err) from None
            for record in prepared:
                self._update(record.label, pid=int(found[record.label]["array"]), scheduler=found[record.label],
                             log_tail="waiting: submitted")
        return [self.store.get(r.label) for r in ready]

    async def _place_points(self, spec: JobSpec, count: int) -> list[tuple[str | None, str | None]]:
        """Where each of ``count`` points goes: the best fit among the hosts with a slot
        left after the points placed before it (all of them when none has one)."""
        from simtui.engine.placement import place

        results = await self.probe(list(self.config.hosts), self.config.defaults.timeout)
        taken: dict[str, int] = {}
        chosen: list[tuple[str | None, str | None]] = []
        for _ in range(count):
            full = {r.spec.name for r in results if r.spec.max_jobs is not None
                    and len(self.active(r.spec.name)) + taken.get(r.spec.name, 0) >= r.spec.max_jobs}
            placement = _placed(place(spec.needs, [r for r in results if r.spec.name not in full] or results))
            host = placement.host.split("/", 1)[0]
            taken[host] = taken.get(host, 0) + 1
            chosen.append((placement.host, placement.why))
        return chosen

    def in_sweep(self, sweep: str) -> list[Record]:
        """Its records, oldest first."""
        return list(reversed(list(self.store.find(sweep=sweep, limit=None))))

    async def kill_sweep(self, sweep: str) -> list[Record]:
        """Kill every run of the sweep that has not ended; the records as they are after."""
        for record in self.in_sweep(sweep):
            if not record.state.finished:
                with contextlib.suppress(UsageError):  # it ended meanwhile
                    await self.kill(record.label)
        return self.in_sweep(sweep)

    async def rerun_sweep(self, sweep: str, *, failed: bool = False,
                          progress: Callable[[int, int], None] | None = None) -> list[Record]:
        """Rerun the sweep's points (with ``failed``: those that failed, were killed or
        were lost, and have not been rerun since) into the same sweep."""
        records = self.in_sweep(sweep)
        rerun = {r.repeat_of for r in records}
        chosen = [r for r in records if not failed or (
            r.state in (JobState.FAILED, JobState.KILLED, JobState.LOST) and r.label not in rerun)]
        if not chosen:
            raise UsageError(f"sweep {sweep} has no {'failed ' if failed else ''}runs to rerun")
        return [await self.rerun(r.label, progress=progress) for r in chosen]

    def _has_slot(self, host: str) -> bool:
        limit = self.host_spec(host).max_jobs
        if limit is None:
            return True
        return len(self.active(host)) < limit

    def active(self, host: str | None = None) -> list[Record]:
        """Records of jobs starting or running (on ``host``, if given), and of those
        waiting in their host's own queue (a Slurm job pending)."""
        submitted = [r for r in self.store.find(host=host, state=JobState.QUEUED, limit=None) if r.host_queued]
        return [r for state in ACTIVE for r in self.store.find(host=host, state=state, limit=None)] + submitted

    async def start(self, record: Record, *, requeue: bool = False, array: bool = False) -> Record:
        """Launch a queued (or just recorded) job on its host. A launch that fails
        leaves the record failed with the reason and raises LaunchError; a kill
        that cancelled it meanwhile stands. With ``requeue`` (the queue starting
        it), a host lost on the way puts it back in the queue instead; a later
        start that finds it launched after all adopts it."""
        label = record.label
        if record.state is not JobState.STARTING:
            self._update(label, state=JobState.STARTING, client=runs.this_client())
        spec = JobSpec.from_dict(record.spec) if record.spec else None
        plan = runs.params_plan(spec, record.params) if spec else None
        try:
            host = await self.host(record.host)
            if spec and spec.tree:
                await runs.make_run_folder(host, home_relative(runs.project_folder(record.workdir)), label, spec.tree)
            image = await containers.resolve(host, spec.image, host.spec.container) if spec and spec.image else None
            started = time.time()
            host, launched = await self._launch(
                host, record, own_dir=bool(spec and spec.tree), params=plan[0] if plan else None,
                request=replace(self._request(record, spec), array=array),
                environment=image.environment(spec.needs.gpu_count) if spec and image else ())
        except remote.AlreadyLaunched:
            return await self._settle_orphan(host, self.store.get(label))
        except SimtuiError as err:
            if self.store.get(label).state is JobState.KILLED:
                return self.store.get(label)
            if requeue and isinstance(err, HostError) and not isinstance(err, remote.LaunchFailed):
                return self._update(label, state=JobState.QUEUED, client=None, log_tail=f"waiting: {err}")
            self._update(label, state=JobState.FAILED, ended=time.time(), log_tail=str(err), client=None)
            raise LaunchError(label, err) from None
        fields: dict[str, Any] = dict(pid=launched.pid, pid_start=launched.pid_start, started=started,
                                      run_dir=launched.run_dir, outputs_root=launched.outputs_root, client=None,
                                      container=image.to_dict() if image else None)
        if plan:
            argv = runs.ran_argv(record.argv, plan[0].positions, plan[0].target.partition(":")[2]
                                 if plan[0].target.startswith("work:") else launched.params_path)
            fields.update(argv=argv, command=shlex.join(argv),
                          params_file={**(record.params_file or {}), "path": launched.params_path})
        if launched.scheduler:  # in its host's own queue: it runs when the scheduler says
            fields.update(scheduler=launched.scheduler, started=None,
                          log_tail=f"waiting: {launched.scheduler.get('reason') or 'submitted'}")
        if self.store.get(label).state is not JobState.KILLED:  # a kill that came meanwhile stands
            fields["state"] = JobState.QUEUED if launched.scheduler else JobState.RUNNING
        return self._update(label, **fields)

    def _request(self, record: Record, spec: JobSpec | None) -> remote.Request:
        """What the job asks of a scheduler: its needs, partition, time limit, and
        the job in the same queue it waits for (see _chains)."""
        after = None
        if record.after:
            dep = self.store.get(record.after)
            if dep.state is not JobState.SUCCEEDED and dep.host == record.host:
                after = dep.pid
        return remote.Request(Needs(**record.needs) if record.needs else Needs(),
                              spec.partition if spec else None, spec.time if spec else None, after)

    async def _launch(self, host: Host, record: Record, **options: Any) -> tuple[Host, remote.Launched]:
        """remote.launch, once more where the agent was removed from the host meanwhile
        or the connection turned out to be gone (a new one is dialled: the pid file
        makes a second launch of one label safe, see AlreadyLaunched)."""

        async def once() -> remote.Launched:
            return await host.launch_job(record.jobs_dir, record.label, record.argv, record.workdir or ".",
                                         await self._capture(host, record), record.venv, share=host.spec.share,
                                         **options)

        try:
            return host, await once()
        except remote.AgentGone:
            forget_agent(host)
        except HostDisconnected:
            await self.pool.drop(record.host)
            host = await self.host(record.host)
        return host, await once()

    @staticmethod
    async def _capture(host: Host, record: Record) -> remote.Capture | None:
        """What the wrapper should capture: provenance.py comes with the agent
        bundle; a host without python3 gets no capture."""
        agent = await install_agent(host)
        if agent is None:
            return None
        inputs = tuple(item["path"] for item in record.inputs)
        return remote.Capture(posixpath.join(posixpath.dirname(agent), "provenance.py"), inputs,
                              record.outputs_dir or ".")

    # -- keep records current --------------------------------------------------

    def host_spec(self, name: str) -> HostSpec:
        """A configured host's spec, or a live machine's (made for a job)."""
        try:
            return self.config.host(name)
        except ConfigError:
            spec = self.machines.spec(name)
            if spec is None:
                raise
            return spec

    async def host(self, name: str) -> Host:
        """The host's connection; a new connection first brings its records up to date."""
        fresh = not self.pool.is_connected(name)
        host = await self.pool.get(name)
        if fresh:
            await self._reconcile(host)
        return host

    async def reconcile(self, host_name: str) -> list[Record]:
        """Bring the host's active records up to date from their job folders."""
        return await self._reconcile(await self.pool.get(host_name))

    async def _reconcile(self, host: Host) -> list[Record]:
        by_dir: dict[str, list[Record]] = {}
        for record in self.active(host.name):
            by_dir.setdefault(record.jobs_dir, []).append(record)
        settled = []
        for jobs_dir, records in by_dir.items():
            found = await host.job_status(jobs_dir, [r.label for r in records])
            for record in records:
                record = self.store.get(record.label)  # as it is now: a launch may have written it meanwhile
                if record.label not in found or record.state.finished or record.label in self._kills:
                    continue  # nothing to say of it, settled, or a kill under way says how it ended
                if record.state is JobState.STARTING and record.pid is None and not found[record.label].pid:
                    if runs.client_alive(record):
                        continue  # its launch is under way
                    record = await self._settle_orphan(host, record)
                    if record.state.finished:
                        settled.append(record)
                        continue
                    found.update(await host.job_status(jobs_dir, [record.label]))
                    if record.label not in found:
                        continue
                record = self._scheduled(record, found[record.label])
                if record.environment is None and record.state is not JobState.QUEUED:  # captured at start
                    record = await self._take_provenance(host, record)
                settled.append(await self._settle(host, record, found[record.label]))
        return settled

    async def _settle_orphan(self, host: Host, record: Record) -> Record:
        """A record left starting by a simtui process that is gone: adopted when its
        job had started, else failed, and made sure it never will start."""
        found = await host.cancel_job(record.jobs_dir, record.label)
        if found is None:
            return self._update(record.label, state=JobState.FAILED, ended=time.time(), client=None,
                                log_tail="never started: the simtui process starting it ended first")
        pid, pid_start = found
        return self._update(record.label, state=JobState.RUNNING, pid=pid, pid_start=pid_start,
                            started=record.started or record.created, client=None)

    def _scheduled(self, record: Record, job: remote.RemoteJob) -> Record:
        """A job in its host's own queue: waiting (and why), or started, as its
        scheduler says; the record keeps what the scheduler says of it."""
        fields: dict[str, Any] = {}
        said = _scheduler(record, job)
        if job.scheduler is not None and said != record.scheduler:
            fields["scheduler"] = said
        if job.alive and job.queued:
            waiting = f"waiting: {(job.scheduler or {}).get('reason') or 'in the queue'}"
            if record.log_tail != waiting:
                fields["log_tail"] = waiting
            if record.state is not JobState.QUEUED:  # an adopted job that still waits
                fields["state"] = JobState.QUEUED
        elif job.alive and record.state is JobState.QUEUED:
            fields.update(state=JobState.RUNNING, started=job.started or time.time(), log_tail=None)
        return self._update(record.label, **fields) if fields else record

    async def _take_provenance(self, host: Host, record: Record, *, final: bool = False,
                               found: dict[str, dict] | None = None) -> Record:
        """Copy what the wrapper captured on the host (meta.json at start; peak.json
        and outputs.json at the end, with ``final``) into the record; ``found``:
        already read (see remote.provenance)."""
        if found is None:
            found = await remote.provenance(host, record.jobs_dir, record.label)
        fields: dict[str, Any] = {}
        if "meta" in found and record.environment is None:
            meta = found["meta"]
            git = record.git or meta.get("git")
            if git and git.get("remote"):  # a remote URL may hold a token: never stored
                git = {**git, "remote": mask(git["remote"])}
            fields.update(git=git, environment=meta.get("environment"),
                          inputs=meta.get("inputs") or record.inputs)
        if final:
            peak = found.get("peak", {})
            fields.update(peak_rss=peak.get("peak_rss"), peak_gpu_mem=peak.get("peak_gpu_mem"))
            if "outputs" in found:
                fields["outputs"] = found["outputs"].get("outputs", [])
        return self._update(record.label, **fields) if fields else record

    async def _settle(self, host: Host, record: Record, job: remote.RemoteJob,
                      found: dict[str, dict] | None = None) -> Record:
        """Finish the record of a job whose processes are gone: exit code, or lost
        (``found``: its provenance files, already read).

        The rest of its log is copied and the local copy compressed, unless another
        simtui process is writing that copy (it will finish it)."""
        if job.alive or (job.pid is None and record.state is JobState.STARTING):
            return record
        if job.exit_code is None and not job.vanished and job.outcome is None:
            return record
        # The exit file's mtime comes from the kernel's coarse clock: never before the start.
        fields: dict = {"ended": max(job.ended or time.time(), record.started or 0)}
        if record.started is None and job.started:  # ended before anyone saw it run (a scheduler started it)
            fields["started"] = min(job.started, fields["ended"])
        if job.scheduler is not None:
            fields["scheduler"] = _scheduler(record, job)
        if record.state is not JobState.KILLED:
            if job.outcome is not None:
                fields["state"] = job.outcome
            else:
                fields["state"] = JobState.LOST if job.exit_code is None else (
                    JobState.SUCCEEDED if job.exit_code == 0 else JobState.FAILED)
            if job.exit_code is not None:
                fields["exit_code"] = job.exit_code
        record = await self._take_provenance(host, record, final=True, found=found)
        log = LocalLog(record.label)
        if log.claim():  # else its follower finishes the copy
            fields.update(await self._finish_log(host, record, log))
        if self.store.get(record.label).state is JobState.KILLED:  # a kill landed meanwhile: its outcome stands
            fields = {k: v for k, v in fields.items() if k not in ("state", "exit_code", "ended")}
        return self._update(record.label, **fields)

    async def _finish_log(self, host: Host, record: Record, log: LocalLog, *, keep_claim: bool = False,
                          end_size: int | None = None, ingest: MetricsIngest | None = None) -> dict[str, Any]:
        """The rest of a finished job's log into the local copy (claimed by the
        caller), its last lines for the record, then the copy compressed. With
        ``end_size`` (the log's size at the end) a copy that has it all is not
        read again from the host.

        Where the copy cannot be stored (NoSpace: a full disk) it stays a true
        prefix of the log and FileFault is raised: the record is not settled here,
        so a later pass finishes it once there is space. The claim is given up
        then, unless ``keep_claim`` (the follower, which tries again itself). The
        metrics of the rest are taken (by ``ingest``, the follower's, where it has one)."""
        try:
            if not log.compressed and (end_size is None or log.size() < end_size):
                async for chunk in remote.read(host, record.jobs_dir, record.label, log.size()):
                    log.append(chunk)
            tail = self._tail(log)
            ingest = ingest or MetricsIngest(self.store, record)
            later = ingest.behind(log) > AT_ONCE  # a flood: the record does not wait for its metrics
            if not later:
                await ingest.finish(log)
            await asyncio.to_thread(log.compress)  # seconds for a big log: not on the event loop
            if later:
                self._background(ingest.finish(log))  # reads the compressed copy
        except FileFault:
            if not keep_claim:
                log.close()
            raise
        return {"log_tail": tail} if tail is not None else {}

    async def finish_copies(self, skip: set[str] = frozenset()) -> list[Record]:
        """Finish the local copies of finished jobs that were left unfinished (a
        follower stopped by a kill -9, or its host down at the job's end): the
        rest from the host, the last lines, compressed. Labels in ``skip`` (being
        followed) are left alone; so is a host that cannot be reached now."""
        done = []
        for label in LocalLog.unfinished():
            if label in skip:
                continue
            try:
                record = self.store.get(label)
                finished = await self.finish_copy(record) if record.state.finished else None
            except SimtuiError:
                continue
            if finished is not None:
                done.append(finished)
        return done

    async def finish_copy(self, record: Record) -> Record | None:
        """Finish the local copy of a finished job's log (see _finish_log): the record
        after; None when another simtui process writes that copy. Where it cannot
        be finished now (its host away, no space) the claim is given up and the
        SimtuiError raised."""
        log = LocalLog(record.label)
        if not log.claim():
            return None
        try:
            fields = await self._finish_log(await self.host(record.host), record, log)
        except SimtuiError:
            log.close()
            raise
        return self._update(record.label, **fields) if fields else record

    @staticmethod
    def _tail(log: LocalLog) -> str | None:
        _, data = log.tail(TAIL_BYTES)
        lines = data.decode("utf-8", "replace").splitlines()[-TAIL_LINES:]
        return sanitize("\n".join(lines)) if lines else None

    # -- logs -------------------------------------------------------------------

    async def follow(
        self, label: str, on_data: Callable[[bytes], None] | None = None, offset: int | None = None
    ) -> Record:
        """Pass the job's log from byte ``offset`` on to ``on_data`` (default: from the
        end of the local copy) until the job ends, through reconnects; returns the
        finished record.

        Each pass resumes where the last one stopped, so every byte arrives once.
        Unless another simtui process already does, the bytes also go into the local
        copy (which then may start below ``offset``: those bytes are stored, not
        passed on). A queued job is waited for (and started here when its turn comes).

        Where the local copy cannot be stored (a full disk: NoSpace) the job is still
        followed and its bytes passed on; the copy stays a true prefix and the next
        pass (a reconnect, the job's end) fetches what it lacks from the host, again
        until there is space. The record's events say where the copy stopped and
        when it caught up; a record that cannot be written waits the same way.
        """
        log = LocalLog(self.store.resolve(label))
        writer = log.claim()
        pos = log.size() if writer or offset is None else offset  # where the stream resumes
        shown = pos if offset is None else offset  # bytes below this are not passed on
        if on_data and shown < pos:  # the caller wants bytes the local copy already holds
            for chunk in log.chunks(shown):
                on_data(chunk)
            shown = pos
        delays = iter(RECONNECT_BACKOFF)
        lag: dict[str, Any] | None = None  # since when, from which byte and why the copy waits
        late: tuple[float, str] | None = None  # since when and why the record could not be written
        storing = writer
        end_size: int | None = None  # the log's size at the job's end, when its follower said so
        ingest = MetricsIngest(self.store, self.store.get(log.label)) if writer else None
        try:
            while True:
                if writer and not storing:  # the copy lags: this pass fetches what it lacks
                    shown, pos, storing = max(shown, pos), log.size(), True
                record = self.store.get(log.label)
                if record.state.finished:
                    if writer and not log.compressed:  # settled by another pass while we held the copy
                        try:
                            with contextlib.suppress(HostError):
                                fields = await self._finish_log(await self.host(record.host), record, log,
                                                                keep_claim=True, end_size=end_size, ingest=ingest)
                                record = self._update(record.label, **fields) if fields else record
                        except FileFault as err:  # still no space: keep the claim, try again
                            lag = self._log_lags(record.label, lag, log.size(), err)
                            await asyncio.sleep(next(delays, RECONNECT_BACKOFF[-1]))
                            continue
                    if lag is not None and log.compressed:
                        self._log_caught_up(record.label, lag)
                    if late is not None:
                        with contextlib.suppress(SimtuiError):
                            self.store.add_event(record.label, "late", f"the record could not be written for "
                                                 f"{time.time() - late[0]:.0f}s: {late[1]}")
                    if on_data and (end_size is None or max(pos, shown) < end_size):
                        await self._deliver_rest(record, max(pos, shown), on_data)
                    return record
                try:
                    if record.state is JobState.QUEUED and not record.host_queued:
                        await self.schedule()
                        raise _NotYet
                    host = await self.host(record.host)
                    if record.host_queued:  # in its host's queue (requeued): the host's one
                        await asyncio.sleep(self.config.defaults.interval)  # poll for all its jobs moves it on
                        continue
                    live = host.follow_job(record.jobs_dir, record.label, record.pid, pos, record.pid_start)
                    async for chunk in live:
                        if storing:
                            try:
                                log.append(chunk)  # all or nothing: the copy stays a true prefix
                            except FileFault as err:
                                storing = False
                                lag = self._log_lags(record.label, lag, pos, err)
                            else:
                                if lag is not None and "until" not in lag and pos + len(chunk) >= shown:
                                    lag["until"] = time.time()  # whole again up to what was passed on
                                if ingest is not None:
                                    ingest.kick(log)
                        if on_data and pos + len(chunk) > shown:
                            on_data(chunk[max(shown - pos, 0):])
                        pos += len(chunk)
                    # The stream ended: the job is over (its copy is finished above), or the
                    # connection dropped. The follower's last word settles the record with no
                    # further round trip; without it, the job's folder is read again.
                    ended = live.ended
                    kill = self._kills.get(record.label)
                    if kill is not None:  # its outcome first: a job a kill ended is killed, not failed
                        await kill.wait()
                    if ended is not None and ended.exit_code is not None and host.settles_from_folder:
                        end_size = ended.log_size
                        record = self.store.get(record.label)
                        if not record.state.finished:
                            await self._settle(host, record, ended, live.provenance)
                    elif ended is not None:
                        await self._scheduler_settles(host, record.label)
                    else:
                        await self._reconcile(host)
                    delays = iter(RECONNECT_BACKOFF)
                except (HostError, _NotYet, FileFault) as err:
                    if isinstance(err, HostError):
                        await self.pool.drop(record.host)
                    elif isinstance(err, FileFault) and late is None:  # the record cannot be written: later
                        late = (time.time(), str(err))
                        logger.warning("%s: its record waits: %s", record.label, err)
                    await asyncio.sleep(next(delays, RECONNECT_BACKOFF[-1]))
        finally:
            log.close()

    async def _scheduler_settles(self, host: Host, label: str) -> None:
        """A job whose folder shows its end on a host whose scheduler has the last word
        on it: the host's poll (one for all its jobs; asked for now) settles it."""
        if self.poll_soon is None:
            await self._reconcile(host)
            return
        self.poll_soon(host.name)
        deadline = time.monotonic() + max(10 * self.config.defaults.interval, 10.0)
        while not self.store.get(label).state.finished and time.monotonic() < deadline:
            await asyncio.sleep(SCHEDULER_LAG)

    def _log_lags(self, label: str, lag: dict[str, Any] | None, at: int, err: Exception) -> dict[str, Any]:
        """The local copy (or the record) could not be written: said once in the
        server's log and, where the records can take it, in the record's events."""
        if lag is not None:
            return lag
        lag = {"since": time.time(), "at": at, "why": str(err), "noted": False}
        logger.warning("%s: the local copy of the log waits at byte %d: %s",
                                                   label, at, err)
        with contextlib.suppress(SimtuiError):
            self.store.add_event(label, "log", f"the local copy of the log stopped at byte {at}: {err}")
            lag["noted"] = True
        return lag

    def _log_caught_up(self, label: str, lag: dict[str, Any]) -> None:
        """The copy is whole again: the record says how long it lagged, and why."""
        waited = lag.get("until", time.time()) - lag["since"]
        detail = f"the local copy of the log caught up after {waited:.0f}s"
        if not lag["noted"]:
            detail += f"; it had stopped at byte {lag['at']}: {lag['why']}"
        with contextlib.suppress(SimtuiError):
            self.store.add_event(label, "log", detail)

    async def _deliver_rest(self, record: Record, offset: int, on_data: Callable[[bytes], None]) -> None:
        """Bytes past ``offset`` of a finished job (written while we were cut off)."""
        log = LocalLog(record.label)
        if log.compressed:
            for chunk in log.chunks(offset):
                on_data(chunk)
            return
        try:
            host = await self.host(record.host)
            async for chunk in remote.read(host, record.jobs_dir, record.label, offset):
                on_data(chunk)
        except HostError:
            return  # the record is final; its log can be read once the host is back

    async def read(self, label: str, on_data: Callable[[bytes], None], offset: int = 0) -> int:
        """The whole log so far from byte ``offset``: the local copy, then what the
        host has beyond it. Returns the offset after the last byte delivered."""
        record = self.store.get(label)
        log = LocalLog(record.label)
        at = offset
        for chunk in log.chunks(offset):
            at += len(chunk)
            on_data(chunk)
        if log.compressed or record.pid is None:
            return at
        host = await self.host(record.host)
        async for chunk in remote.read(host, record.jobs_dir, record.label, at):
            at += len(chunk)
            on_data(chunk)
        return at

    # -- kill, rerun ------------------------------------------------------------

    async def kill(self, label: str) -> Record:
        """TERM the job's process group, KILL after the configured grace; state killed.

        A queued job, or one starting whose job has not begun, is cancelled. Only
        the job's own processes get a signal (its pid and that pid's start time as
        recorded); a job that had ended keeps its outcome (a UsageError says so)."""
        record = self.store.get(label)
        if record.state.finished:
            raise UsageError(f"{record.label} is already {record.state.value}")
        if record.state is JobState.QUEUED and not record.host_queued:  # in simtui's queue: never started
            return self._update(record.label, state=JobState.KILLED, ended=time.time())
        host = await self.host(record.host)
        record = self.store.get(record.label)  # connecting may have settled it
        if record.state.finished:
            raise UsageError(f"{record.label} is already {record.state.value}")
        pid, pid_start = record.pid, record.pid_start
        if pid is None:  # starting: make sure it never starts, unless it has
            found = await host.cancel_job(record.jobs_dir, record.label)
            if found is None:
                return self._update(record.label, state=JobState.KILLED, ended=time.time(), client=None,
                                    log_tail="cancelled before it started")
            pid, pid_start = found
        done = self._kills.setdefault(record.label, asyncio.Event())
        try:
            outcome = await host.kill_job(record.jobs_dir, record.label, self.config.defaults.kill_grace,
                                          pid, pid_start)
            if outcome != "killed":  # it had ended, or nothing of it is left: its folder says how
                await self._reconcile(host)
                record = self.store.get(record.label)
                if record.state.finished:
                    raise UsageError(f"{record.label} is already {record.state.value}")
                return record
            job = (await host.job_status(record.jobs_dir, [record.label])).get(record.label)
            fields = {"scheduler": _scheduler(record, job)} if job and job.scheduler else {}
            return self._update(record.label, state=JobState.KILLED, exit_code=job and job.exit_code,
                                ended=(job and job.ended) or time.time(), **fields)
        finally:
            self._kills.pop(record.label, None)
            done.set()

    async def rerun(self, label: str, host: str | None = None, *,
                    progress: Callable[[int, int], None] | None = None) -> Record:
        """The same spec under a new label, ``repeat_of`` the old one; on ``host`` if
        given. A synced run gets exactly the tree it ran, whatever the checkout holds now."""
        old = self.store.get(label)
        spec = JobSpec.from_dict(old.spec) if old.spec else self._legacy_spec(old)
        if not spec.tree:
            spec = replace(spec, workdir=old.workdir)
        if old.container:  # the image that ran, by its id: never a tag that may have moved
            spec = replace(spec, image=old.container["pinned"])
        if host or not spec.provider:  # else a new machine is made for it
            spec = replace(spec, host=host or spec.host or (None if old.needs else old.host), provider=None)
        spec = replace(spec, after=None, placement=None, params=old.params)
        return await self.submit(spec, repeat_of=old.label, progress=progress)

    def keep_verdict(self, original: Record, rerun: Record) -> tuple[Record, dict[str, Any]]:
        """Reproduce's end: the rerun's outputs compared with the original's
        (outputs.compare), the verdict kept in the rerun's record."""
        verdict = outputs.compare(original, rerun)
        return self._update(rerun.label, reproduction=verdict), verdict

    async def outputs(self, label: str, pull_to: Path | None = None) -> tuple[Record, list[outputs.Output]]:
        """The record's outputs and what its host holds of them now; with ``pull_to``,
        fetched there and checked."""
        record = self.store.get(label)
        if record.machine and record.machine.get("destroyed"):  # what was brought here before it went
            if not record.machine.get("outputs"):
                raise UsageError(f"{record.label} ran on machine {record.host}, destroyed without its outputs "
                                 f"pulled: {record.machine.get('left') or 'it made none'}")
            record = replace(record, outputs_root=record.machine["outputs"])
            host: Host = this_machine()
        else:
            host = await self.host(record.host)
        if pull_to is None:
            return record, await outputs.check(host, record)
        return record, await outputs.pull(host, record, pull_to)

    @staticmethod
    def _legacy_spec(old: Record) -> JobSpec:
        """The spec of a record written before records kept theirs."""
        tree = (old.git or {}).get("tree_sha256") if old.project else None
        return JobSpec(
            argv=tuple(old.argv), needs=Needs(**old.needs) if old.needs else Needs(), workdir=old.workdir,
            tags=tuple(old.tags), reason=old.reason, params=old.params,
            inputs=tuple(item["path"] for item in old.inputs), outputs_dir=old.outputs_dir,
            project=old.project, git=old.git, venv=old.venv, tree=tree,
        )

    # -- the queue ---------------------------------------------------------------

    async def schedule(self) -> list[Record]:
        """Start queued jobs whose dependency succeeded and whose host has a free slot;
        fail those whose dependency did not succeed. Oldest first. A job whose host
        cannot be reached now stays queued: it starts once the host is back."""
        changed = []
        reconciled: set[str] = set()
        for record in reversed(list(self.store.find(state=JobState.QUEUED, limit=None))):
            if record.host_queued:  # in its host's own queue already
                continue
            if record.after:
                dep = self.store.get(record.after)
                if dep.state.finished and dep.state is not JobState.SUCCEEDED:
                    changed.append(self._update(
                        record.label, state=JobState.FAILED, ended=time.time(),
                        log_tail=f"dependency failed: {dep.label} is {dep.state.value}",
                    ))
                    continue
                if dep.state is not JobState.SUCCEEDED:
                    continue
            if record.machine is not None:  # a machine made for it: begun once its sweep has a slot
                if self.machines.waiting(record) and self.machines.has_slot(record):
                    self.machines.begin(record)
                continue
            if not self.reachable(record.host):
                continue
            try:
                await self.host(record.host)  # before the record says starting: a host that is down keeps it queued
            except HostError:
                continue
            if self.host_spec(record.host).max_jobs is not None and record.host not in reconciled:
                reconciled.add(record.host)  # a slot may have freed since anyone looked
                with contextlib.suppress(HostError):
                    await self.reconcile(record.host)
            max_parallel = (record.spec or {}).get("max_parallel")
            if self._has_slot(record.host) and self._sweep_has_slot(record.sweep, max_parallel):
                try:
                    changed.append(await self.start(record, requeue=True))
                except LaunchError:
                    changed.append(self.store.get(record.label))
        return changed


def _placed(placement: Placement) -> Placement:
    """The placement, when a host fits; else SimtuiError naming why each does not."""
    if placement.host is None:
        reasons = "; ".join(f"{name}: {reason}" for name, reason in placement.reasons.items())
        raise SimtuiError(f"no host fits ({placement.why}): {reasons}")
    return placement


def _scheduler(record: Record, job: remote.RemoteJob) -> dict[str, Any]:
    """The record's scheduler facts updated with what the scheduler says now (the
    sbatch line stays)."""
    return {**(record.scheduler or {}), **(job.scheduler or {})}


class _NotYet(Exception):
    """The job has not started yet: wait and look again."""
