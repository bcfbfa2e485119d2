"""What the training scripts assemble from the rooms below: their typed configs and the pieces they build from
them (scripts -> jobs -> {dataloader, trainer, model, evaluation} -> utils)."""
