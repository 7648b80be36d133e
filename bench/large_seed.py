"""The 100,000-key data set: the demo fixture plus 1,000 organizations x 1 repository x 100 keys."""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml

from flashback_contract.mock.seed import demo_seed_text

T0 = datetime(2026, 2, 1, tzinfo=UTC)


def large_seed(organizations: int = 1000, keys_per_repository: int = 100) -> dict[str, object]:
    """The demo data, then generated organizations, each with an owner and one repository."""
    data = yaml.load(demo_seed_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    for n in range(organizations):
        org, repo = f"org-bulk-{n:04d}", f"repo-bulk-{n:04d}"
        data["organizations"].append({"id": org, "name": f"Bulk {n}"})
        data["users"].append(
            {"id": f"user-bulk-{n:04d}", "org": org, "role": "OWNER", "token": f"bulk-{n:04d}"}
        )
        data["repositories"].append({"id": repo, "org": org, "name": f"bulk-{n}"})
        data["aiApiKeys"].extend(
            {
                "id": f"ai-bulk-{n:04d}-{k:03d}",
                "repo": repo,
                "name": f"key {k}",
                "aiType": "OPENAI",
                "key": f"fbk_bulk{n:04d}{k:03d}",
                "createdAt": (T0 + timedelta(seconds=n * keys_per_repository + k)).isoformat(),
            }
            for k in range(keys_per_repository)
        )
    return data


def write_yaml(data: dict[str, object], path: Path) -> Path:
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    with path.open("w", encoding="utf-8") as out:
        yaml.dump(data, out, Dumper=dumper)
    return path


def write_large_seed(path: Path, organizations: int = 1000, keys_per_repository: int = 100) -> Path:
    return write_yaml(large_seed(organizations, keys_per_repository), path)


if __name__ == "__main__":
    print(write_large_seed(Path(sys.argv[1] if len(sys.argv) > 1 else "large-seed.yaml")))
