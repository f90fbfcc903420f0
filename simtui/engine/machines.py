"""Machines made for one job: created by a provider's command, reached over SSH
with the host key the provider gave, the project synced, the job run, its log
and outputs brought here, then destroyed, whatever the job's end.

The machines table (store.machines) has each one from before its create runs
until its destroy succeeded. ``tend`` (each pass of the server's queue loop)
sees every machine that nothing in this process is making: a job that ended has
its log copy finished and its outputs pulled into ``$SIMTUI_HOME/outputs/LABEL``,
then the machine is destroyed; a machine whose making a stopped simtui left
half-done fails its record and is destroyed; a running job is left to its
follower. A destroy that fails is tried again (DESTROY_RETRY) and listed by
``simtui machines`` with why.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shlex
import time
from dataclasses import asdict, replace
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from simtui.config import simtui_home
from simtui.engine import outputs, providers, runs
from simtui.errors import ChangedHostKey, ConfigError, FileFault, HostError, LaunchError, SimtuiError, \
    UnknownHostKey, UnknownLabel, UsageError
from simtui.hosts import Host
from simtui.model import HostSpec, JobSpec, JobState, Machine, ProviderSpec, Record
from simtui.provenance import make_label
from simtui.store import machines as table
from simtui.store.logs import LocalLog

if TYPE_CHECKING:
    from simtui.engine.jobs import Engine

logger = logging.getLogger("simtui.engine")
BOOT_RETRY = 1.0  # seconds between tries to reach a machine whose SSH does not answer yet
DESTROY_RETRY = 30.0  # seconds before a failed destroy is tried again
MAKING = ("creating", "booting")  # a machine's states before its SSH first answered


def outputs_folder(label: str) -> Path:
    """Where a machine's job's outputs are pulled to, here."""
    return simtui_home() / "outputs" / label


class Machines:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.store = engine.store
        self.config = engine.config
        self.making: dict[str, asyncio.Task] = {}  # by machine name: its create, boot, sync and launch
        self._retry_at: dict[str, float] = {}  # monotonic: a failed destroy is not tried again before then
        self.on_destroy: Callable[[str], None] | None = None  # hears of a machine just before its destroy

    # -- a machine as a host --------------------------------------------------------

    def spec(self, name: str) -> HostSpec | None:
        """The host spec of a live machine that has an address, else None."""
        machine = table.get(self.store, name)
        return self.spec_of(machine) if machine is not None else None

    def spec_of(self, machine: Machine) -> HostSpec | None:
        """``machine``'s host spec (as read already), if it is live and has an address."""
        provider = self._provider(machine)
        if provider is None or not machine.live or machine.address is None:
            return None
        return replace(provider.host, name=machine.name, address=machine.address,
                       port=machine.port or provider.host.port, user=machine.user or provider.host.user,
                       known_hosts=str(self._known_hosts(machine.name)))

    @staticmethod
    def _known_hosts(name: str) -> Path:
        return simtui_home() / "machines" / f"{name}.known_hosts"

    def live(self) -> list[Machine]:
        return table.listed(self.store)

    # -- making one for a job ---------------------------------------------------------

    def size(self, provider: ProviderSpec, size: str | None) -> str:
        """The size asked for (else the provider's own), checked against its prices."""
        size = size or provider.size
        if size is None:
            raise UsageError(f"give --size (provider {provider.name} has no default size)")
        if provider.prices and size not in provider.prices:
            raise UsageError(f"provider {provider.name} has no size {size!r} (sizes with a price: "
                             f"{', '.join(provider.prices)})")
        return size

    async def submit(self, spec: JobSpec, repeat_of: str | None, progress: Any,
                     stage: Callable[[str], None] | None = None) -> Record:
        """Record the job, then make its machine and start it there; ``stage`` hears
        each step. The making goes on in this process whoever waits for it (the
        caller may go). A job that waits for another (``after``), or a point of a
        sweep with no slot left (``max_parallel`` machines live), waits queued: the
        queue begins it (``begin``) once that one succeeded, or one machine went."""
        record = self._new_record(spec, repeat_of)
        if record.after and self.store.get(record.after).state is not JobState.SUCCEEDED:
            return self.engine._update(record.label, log_tail=f"waiting: for {record.after} to succeed")
        if not self.has_slot(record):
            return self.engine._update(record.label, log_tail="waiting: for a slot of its sweep (machines live: "
                                                              f"{(record.spec or {}).get('max_parallel')})")
        return await asyncio.shield(self.begin(record, progress, stage))

    async def sweep(self, spec: JobSpec, points: list[dict[str, Any]], progress: Any,
                    stage: Callable[[str], None] | None = None) -> list[Record]:
        """A machine for each point, made side by side (at most ``max_parallel`` live
        at once); the records as they are once those begun have started (or failed)."""
        found = await asyncio.gather(*(self.submit(replace(spec, params={**spec.params, **point}), None, progress,
                                                   stage) for point in points), return_exceptions=True)
        for outcome in found:
            if not isinstance(outcome, (Record, LaunchError)):
                raise outcome
        return [self.store.get(outcome.label) for outcome in found]

    def has_slot(self, record: Record) -> bool:
        """Fewer than its sweep's ``max_parallel`` machines live, until destroyed (or
        no such limit): the limit is on what costs, not only on what runs."""
        limit = (record.spec or {}).get("max_parallel")
        if not record.sweep or not limit:
            return True
        live = {m.name for m in self.live()}
        hosts = self.store.select(("host",), sweep=record.sweep, limit=None)  # one small column, not whole records
        return sum(host in live for (host,) in hosts) < limit

    def waiting(self, record: Record) -> bool:
        """A record waiting in simtui's queue for its machine to be begun."""
        return record.machine is not None and record.state is JobState.QUEUED and \
            record.host not in self.making and table.get(self.store, record.host) is None

    def _new_record(self, spec: JobSpec, repeat_of: str | None) -> Record:
        """The record of a job on a machine to be made (queued, its machine named)."""
        engine = self.engine
        provider = self.config.provider(spec.provider or "")
        size = self.size(provider, spec.size)
        spec = replace(spec, size=size, host=None)
        now = time.time()
        label = make_label({"argv": list(spec.argv), "provider": provider.name, "size": size, "created": now})
        name = f"{provider.name}-{label}"
        machine = Machine(name, provider.name, size, label, now, price=provider.prices.get(size))
        record = Record(
            label=label, host=name, command=shlex.join(spec.argv), state=JobState.QUEUED, argv=list(spec.argv),
            tags=list(spec.tags), reason=spec.reason, params=dict(spec.params), repeat_of=repeat_of, after=spec.after,
            needs=asdict(spec.needs) if not spec.needs.is_empty() else None, jobs_dir=provider.host.jobs_dir,
            created=now, inputs=[{"path": p} for p in spec.inputs], outputs_dir=spec.outputs_dir,
            spec=spec.to_dict(), sweep=spec.sweep, machine={k: v for k, v in self._facts(machine).items()
                                                            if k != "created"},  # made: see begin
            placement=f"a {size} machine made by {provider.name}")
        self.store.insert(record)
        stored = self.store.get(label)
        if engine.on_change is not None:
            engine.on_change(stored)
        return stored

    def begin(self, record: Record, progress: Any = None, stage: Callable[[str], None] | None = None,
              ) -> asyncio.Task:
        """Make the record's machine and start its job there, in a task of its own
        (the caller may wait for it, or not)."""
        spec = JobSpec.from_dict(record.spec or {"argv": record.argv})
        provider = self.config.provider(spec.provider or "")
        facts = record.machine or {}
        machine = Machine(record.host, provider.name, spec.size or "", record.label, time.time(),
                          price=facts.get("price_per_hour"))
        table.add(self.store, machine)  # before its create: from here on a crash leaves it accounted for
        self.engine._update(record.label, machine={**facts, "created": machine.created},
                            log_tail=f"waiting: making machine {machine.name} ({machine.size}) with {provider.name}")
        task = asyncio.ensure_future(self._make_and_start(record.label, spec, provider, machine, progress, stage))
        self.making[machine.name] = task

        def done(task: asyncio.Task) -> None:
            self.making.pop(machine.name, None)
            if not task.cancelled():
                task.exception()  # a launch that failed is in its record: nobody need hear it again

        task.add_done_callback(done)
        return task

    async def _make_and_start(self, label: str, spec: JobSpec, provider: ProviderSpec, machine: Machine,
                              progress: Any, stage: Callable[[str], None] | None) -> Record:
        engine = self.engine

        def doing(text: str, tail: str | None = None) -> None:  # told whoever waits; what it waits for, in the record
            if tail is not None:
                engine._update(label, log_tail=f"waiting: {tail}")
            if stage is not None:
                stage(text)

        try:
            doing(f"making machine {machine.name} ({machine.size}) with {provider.name}")
            machine = await self._create(provider, machine, spec.image)
            if self._killed(label):
                return self.store.get(label)
            doing(f"waiting for SSH on {machine.name} ({machine.address})", f"SSH on {machine.address}")
            host = await self._boot(provider, machine)
            if self._killed(label):
                return self.store.get(label)
            if spec.sync or spec.tree:
                doing(f"sending the project to {machine.name}", f"the project sent to {machine.name}")
                spec = await runs.prepare(host, spec, label, progress)
            plan = runs.params_plan(spec, spec.params)
            record = engine._update(
                label, state=JobState.STARTING, client=runs.this_client(), log_tail=None,
                workdir=spec.workdir or host.default_workdir(), project=spec.project, git=spec.git, venv=spec.venv,
                spec=spec.to_dict(), params_file=plan[1] if plan else None)
        except SimtuiError as err:
            if not self._killed(label):
                engine._update(label, state=JobState.FAILED, ended=time.time(), log_tail=str(err), client=None)
            raise LaunchError(label, err) from None
        return await engine.start(record)

    def _killed(self, label: str) -> bool:
        return self.store.get(label).state is JobState.KILLED

    async def _create(self, provider: ProviderSpec, machine: Machine, image: str | None) -> Machine:
        """Run create; the machine's address and host keys kept (and written where its
        SSH connection reads them)."""
        env = providers.environment(provider, machine, image)
        created = providers.parse_created(provider, await providers.run(
            provider, "create", env, provider.create_timeout))
        machine = table.update(self.store, machine.name, state="booting", address=created.address,
                               port=created.port, user=created.user, machine_id=created.machine_id)
        keys = created.host_keys or await providers.wait_for_keys(provider, providers.environment(provider, machine))
        machine = table.update(self.store, machine.name, host_keys=keys)
        path = self._known_hosts(machine.name)
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        path.write_text(providers.known_hosts(machine))
        os.chmod(path, 0o600)
        return machine

    async def _boot(self, provider: ProviderSpec, machine: Machine) -> Host:
        """The machine's connection, once its SSH answers with the key the provider gave."""
        deadline = time.monotonic() + provider.boot_timeout
        while True:
            try:
                host = await self.engine.host(machine.name)
            except (UnknownHostKey, ChangedHostKey) as err:
                raise HostError(machine.name, f"it did not show the host key {provider.name} gave: refused "
                                f"({err.detail})") from None
            except HostError as err:
                await self.engine.pool.drop(machine.name)
                if time.monotonic() > deadline:
                    raise HostError(machine.name, f"SSH did not answer within {provider.boot_timeout:g}s of "
                                    f"its create: {err.detail}") from None
                await asyncio.sleep(BOOT_RETRY)
                continue
            table.update(self.store, machine.name, state="up", ready=time.time())
            return host

    @staticmethod
    def _facts(machine: Machine) -> dict[str, Any]:
        """What a record keeps of its machine."""
        facts = {"provider": machine.provider, "size": machine.size, "name": machine.name,
                 "price_per_hour": machine.price, "created": machine.created}
        if machine.destroyed is not None:
            facts.update(destroyed=machine.destroyed, cost=machine.cost(machine.destroyed))
        return facts

    # -- seeing each one out ----------------------------------------------------------

    async def tend(self) -> None:
        """One look at every live machine that this process is not making (see the
        module's docstring)."""
        for machine in self.live():
            if machine.name in self.making or time.monotonic() < self._retry_at.get(machine.name, 0):
                continue
            record = self._record(machine)
            if record is not None and not record.state.finished:
                if record.state is JobState.QUEUED or machine.state in MAKING:
                    record = self.engine._update(
                        record.label, state=JobState.FAILED, ended=time.time(), client=None,
                        log_tail="never started: the simtui making its machine stopped first")
                elif record.state is JobState.STARTING:  # a start that a stopped simtui left: settled there
                    with contextlib.suppress(HostError):
                        await self.engine.reconcile(machine.name)
                    continue
                else:
                    continue  # running: its follower sees it to its end
            if record is None:  # its create never ran: it went before its record was written
                self._gone(machine, None, "never made: simtui stopped before its create")
            elif await self._brought_home(machine, record):
                await self.destroy(machine, record)

    async def _brought_home(self, machine: Machine, record: Record) -> bool:
        """The ended job's log copy finished and its outputs pulled, as far as can be;
        False to look again later (its follower is finishing the copy, or the
        machine cannot be reached now, for up to the provider's boot_timeout)."""
        if machine.state != "up" or record.pid is None:
            return True  # nothing ran there
        facts = dict(record.machine or self._facts(machine))
        try:
            if not LocalLog(record.label).compressed:
                finished = await self.engine.finish_copy(record)
                if finished is None:
                    return False  # its follower is finishing the copy
                record = finished
            if outputs.recorded(record) and "outputs" not in facts:
                dest = outputs_folder(record.label)
                pulled = await outputs.pull(await self.engine.host(machine.name), record, dest)
                facts.update(outputs=str(dest), pulled=sum(o.state == outputs.UNCHANGED for o in pulled))
        except (HostError, FileFault) as err:
            provider = self._provider(machine)
            waited = time.time() - (record.ended or time.time())
            if provider is not None and waited < provider.boot_timeout:
                logger.info("%s: %s (its machine is destroyed once it is fetched, or in %.0fs)",
                            record.label, err, provider.boot_timeout - waited)
                return False
            facts["left"] = f"not brought here before its machine was destroyed: {err}"
        except SimtuiError as err:  # outputs that cannot be placed here: said, and the machine goes anyway
            facts["left"] = f"outputs not pulled: {err}"
        if facts != record.machine:
            self.engine._update(record.label, machine=facts)
        return True

    def _provider(self, machine: Machine) -> ProviderSpec | None:
        try:
            return self.config.provider(machine.provider)
        except ConfigError:
            return None

    async def destroy(self, machine: Machine, record: Record | None) -> Machine:
        """Run the provider's destroy; the machine gone from the live ones, and its
        record's machine facts with when and what it cost. A job still running
        there is lost. A machine whose destroy failed stays as it was, with why,
        and is tried again."""
        provider = self._provider(machine)
        try:
            if provider is None:
                raise providers.ProviderError(
                    f"provider {machine.provider} is no longer configured: cannot destroy its machine (configure "
                    f"it again, or destroy it yourself and run simtui machines --forget {machine.name})")
            table.update(self.store, machine.name, state="destroying")
            if self.on_destroy is not None:
                self.on_destroy(machine.name)
            await providers.run(provider, "destroy", providers.environment(provider, machine),
                                provider.create_timeout)
        except providers.ProviderError as err:
            self._retry_at[machine.name] = time.monotonic() + DESTROY_RETRY
            logger.warning("%s: %s", machine.name, err)
            self.engine.notifier.machine_stuck(machine, str(err))
            return table.update(self.store, machine.name, state=machine.state, error=str(err))  # as it was
        self._retry_at.pop(machine.name, None)
        await self.engine.pool.drop(machine.name)
        return self._gone(machine, record, None)

    def _gone(self, machine: Machine, record: Record | None, note: str | None) -> Machine:
        """The machine no longer live (``note``: why, where simtui did not destroy it);
        its record's facts say when it went and what it cost, and a job still running
        there is lost."""
        machine = table.update(self.store, machine.name, state="gone", destroyed=time.time(), error=note)
        with contextlib.suppress(FileNotFoundError):
            self._known_hosts(machine.name).unlink()
        if record is not None:
            record = self.store.get(record.label)
            facts = {**(record.machine or {}), **self._facts(machine), **({"left": note} if note else {})}
            fields: dict[str, Any] = {"machine": facts}
            if not record.state.finished:
                fields.update(state=JobState.LOST, ended=time.time(), log_tail="its machine was destroyed")
            self.engine._update(record.label, **fields)
        return machine

    def forget(self, name: str) -> Machine:
        """``simtui machines --forget NAME``: no longer live, without its destroy (one
        destroyed by hand, or whose provider is gone from the config)."""
        machine = self._live(name)
        return self._gone(machine, self._record(machine), "forgotten: not destroyed by simtui")

    def _live(self, name: str) -> Machine:
        machine = table.get(self.store, name)
        if machine is None or not machine.live:
            raise UsageError(f"no live machine named {name!r} (see simtui machines)")
        if name in self.making:
            raise UsageError(f"{name} is being made: kill its job ({machine.label}) and it is destroyed "
                             "as soon as its create has ended")
        return machine

    def _record(self, machine: Machine) -> Record | None:
        try:
            return self.store.get(machine.label)
        except UnknownLabel:
            return None

    async def destroy_now(self, name: str) -> Machine:
        """``simtui machines --destroy NAME``: destroy it now, whatever its job does."""
        machine = self._live(name)
        machine = await self.destroy(machine, self._record(machine))
        if machine.live:
            raise SimtuiError(machine.error or f"{name}: destroy failed")
        return machine

    async def close(self) -> None:
        """Stop making machines: each is left for the next simtui's tend to destroy."""
        for task in list(self.making.values()):
            task.cancel()
        await asyncio.gather(*self.making.values(), return_exceptions=True)
