"""`--profile` of radius / certify: where the time went per phase (certify/profile.py). The JSON's summary
carries the same numbers under "timers" whether or not --profile is given."""
from __future__ import annotations

import argparse


def add_profile_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--profile", action="store_true",
                   help="print the time per phase (loading, interval, intermediate and final backward passes, "
                        "concretisation, search steps, attack); the JSON has it under summary.timers either way")


def show_profile(con, args, profile) -> None:
    if getattr(args, "profile", False):
        con.table("time per phase (wall seconds; phases nest, see 'what')", ["phase", "seconds", "what"],
                  profile.rows())
        if profile.counts:
            con.print("counts: " + ", ".join(f"{k} {v}" for k, v in profile.counts.items()))
