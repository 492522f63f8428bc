"""The autoguidance paper's 2-D toy (§3, App. C; reference/autoguidance.md §4), reproduced.

``exact``: torch version of the tree-of-Gaussians' exact score (for training); ``model``: the MLP
log-density models; ``tasks``: their TrainTasks; ``panels``: Figure 1's panels and their numbers;
``commands``: the CLI.
"""
