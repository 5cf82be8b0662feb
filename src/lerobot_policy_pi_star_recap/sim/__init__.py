"""Simulation for RECAP data: a fast-rendering MetaWorld env with scripted experts (`metaworld_recap`),
a parallel env pool and the episode collector behind `pi-star-recap collect`.

Only `config` (with the task facts of `tasks` it checks options against) is imported with the package (it
registers `--env.type=metaworld_recap`); the modules that need metaworld / mujoco are imported when an env
is built.
"""
