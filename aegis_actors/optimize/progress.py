"""A rich progress bar on a terminal: trials done/running/failed, best so far, ETA."""

from __future__ import annotations

import optuna
from optuna.trial import TrialState
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from aegis_actors.optimize.study import counts


class Bar:
    def __init__(self, total: int) -> None:
        self.progress = Progress(
            TextColumn("[bold]optimize"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total}"),
            TextColumn("{task.fields[detail]}"),
            TimeRemainingColumn(),
            transient=False,
        )
        self.task = self.progress.add_task("trials", total=total, detail="")
        self.done_before = 0
        self.last = 0
        self.name = ""
        self.progress.start()

    def update(self, study: optuna.Study) -> None:
        trials = study.get_trials(deepcopy=False)
        c = counts(trials)
        done = c["complete"] + c["pruned"] + c["fail"]
        if study.study_name != self.name:  # next walk-forward window
            self.done_before += self.last if self.name else 0
            self.name = study.study_name
        self.last = done
        scored = [t.values for t in trials if t.state == TrialState.COMPLETE and t.values]
        if len(study.directions) > 1:
            best = f"front {len(study.best_trials)}" if scored else "front -"
        else:
            best = f"best {max(v[0] for v in scored):.4g}" if scored else "best -"
        self.progress.update(
            self.task,
            completed=self.done_before + done,
            detail=f"{c['running']} running, {c['fail']} failed, {c['pruned']} pruned, {best}",
        )

    def close(self) -> None:
        self.progress.stop()
