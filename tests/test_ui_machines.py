"""The new-job form offers a new machine of each provider's sizes (frozen: nothing is
dialled nor made); the dashboard's machine rows are tested end to end in
test_machines.py."""

from __future__ import annotations

from textual.widgets import OptionList
from uikit import FrozenApp, frozen_project, pick_and_submit, until

from simtui.config import parse_config
from simtui.ui.screens.new_job import NewJobScreen


async def test_the_form_offers_each_size_of_each_provider_and_submits_a_machine_run():
    config = parse_config({"hosts": [{"name": "box", "address": "box.example"}], "providers": [
        {"name": "do", "create": "true", "destroy": "true", "prices": {"s-2vcpu": 0.036, "c-8": 0.25}},
        {"name": "lab", "create": "true", "destroy": "true", "size": "vm"},
    ]}, "frozen.toml")
    app = FrozenApp(config, live=False, cwd=frozen_project())
    async with app.run_test(size=(160, 48)) as pilot:
        dismissed: list = []
        form = NewJobScreen(app.hosts.values(), config.providers)
        await app.push_screen(form, dismissed.append)
        await until(pilot, lambda: form.is_mounted and form.query_one("#command").has_focus, what="the form")
        picker = form.query_one("#picker", OptionList)
        prompts = {picker.get_option_at_index(i).id: str(picker.get_option_at_index(i).prompt)
                   for i in range(picker.option_count)}
        assert list(prompts)[-3:] == ["machine:do:s-2vcpu", "machine:do:c-8", "machine:lab:vm"]
        assert "+ new do machine (c-8, 0.25/hour)" in prompts["machine:do:c-8"]
        assert "+ new lab machine (vm)" in prompts["machine:lab:vm"]

        spec = await pick_and_submit(pilot, form, "machine:do:c-8", "python train.py", dismissed)
    assert (spec.host, spec.provider, spec.size, spec.sync) == (None, "do", "c-8", True)
    assert spec.project_root == str(frozen_project().resolve()) and spec.argv == ("python", "train.py")
