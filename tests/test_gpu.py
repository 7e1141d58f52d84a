"""Each GPU job on a workstation gets a card of its own (real processes, real file locks)."""

import os
import subprocess
import sys
import textwrap

CLAIM = textwrap.dedent(
    """
    import os, sys, time
    from soundsup.gpu import claim_gpu
    index = claim_gpu(sys.argv[1], wait_s=float(sys.argv[2]))
    print(index, os.environ.get("CUDA_VISIBLE_DEVICES"), flush=True)
    time.sleep(float(sys.argv[3]))
    """
)


def start(lock_dir, wait_s, hold_s, **env):
    environment = {k: v for k, v in os.environ.items() if k != "CUDA_VISIBLE_DEVICES"}
    environment.update(env)
    return subprocess.Popen(
        [sys.executable, "-c", CLAIM, str(lock_dir), str(wait_s), str(hold_s)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environment,
    )


def test_concurrent_jobs_get_distinct_cards_and_a_third_waits(tmp_path):
    first = start(tmp_path, 5, 3, SOUNDSUP_GPU_COUNT="2")
    second = start(tmp_path, 5, 3, SOUNDSUP_GPU_COUNT="2")
    claims = [first.stdout.readline().split(), second.stdout.readline().split()]
    assert sorted(claim[0] for claim in claims) == ["0", "1"]
    assert all(claim[0] == claim[1] for claim in claims)  # CUDA_VISIBLE_DEVICES is the claimed card
    third = start(tmp_path, 0.5, 0, SOUNDSUP_GPU_COUNT="2")
    _, error = third.communicate(timeout=30)
    assert third.returncode != 0 and "no free GPU among 2" in error
    for process in (first, second):
        process.wait(timeout=30)
    fourth = start(tmp_path, 5, 0, SOUNDSUP_GPU_COUNT="2")
    assert fourth.communicate(timeout=30)[0].split()[0] in ("0", "1")


def test_scheduler_choice_is_left_alone(tmp_path):
    process = start(tmp_path, 1, 0, SOUNDSUP_GPU_COUNT="2", CUDA_VISIBLE_DEVICES="1")
    assert process.communicate(timeout=30)[0].split() == ["None", "1"]


def test_no_card_no_change(tmp_path):
    process = start(tmp_path, 1, 0, SOUNDSUP_GPU_COUNT="0")
    assert process.communicate(timeout=30)[0].split() == ["None", "None"]
