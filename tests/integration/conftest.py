"""Integration fixtures: the `ansible` runner (tests/tractor_ansible.py)."""

from __future__ import annotations

import pytest

from tractor_ansible import Ansible


@pytest.fixture(scope="session")
def ansible(owner) -> Ansible:
    return Ansible(owner.pw_name)
