"""Parameter search on Optuna: many workers, on one machine or many, share one study."""
