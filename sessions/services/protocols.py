"""Protocol templates loaded from data files (also by a data migration)."""

import datetime
import json
from pathlib import Path

from django.db import transaction

from .. import monitoring, schedules
from ..models import (
    Protocol,
    ProtocolStep,
)

PROTOCOLS_DIR = Path(__file__).resolve().parents[1] / "protocols"


@transaction.atomic
def load_protocols(
    *,
    directory: Path = PROTOCOLS_DIR,
    Protocol=Protocol,
    ProtocolStep=ProtocolStep,  # noqa: N803
) -> list:
    """Create or update the shipped protocols; running it again changes nothing.

    The model classes are parameters so the data migration can pass its historical models.
    """
    loaded = []
    has_monitoring = any(f.name == "monitoring" for f in ProtocolStep._meta.get_fields())
    has_schedule = any(f.name == "measurement_schedule" for f in Protocol._meta.get_fields())
    for path in sorted(directory.glob("*.json")):
        data = json.loads(path.read_text())
        schedule = data.get("measurement_schedule", [])
        if problems := schedules.schedule_errors(schedule):
            raise ValueError(f"{path.name}: {'; '.join(problems)}")
        protocol, _ = Protocol.objects.update_or_create(
            name=data["name"],
            defaults={
                "description": data["description"],
                "modality": data["modality"],
                "min_preparation_before_dosing": data["min_preparation_before_dosing"],
                **({"measurement_schedule": schedule} if has_schedule else {}),
            },
        )
        for step in data["steps"]:
            if step.get("monitoring") and (
                problems := monitoring.schedule_errors(step["monitoring"])
            ):
                raise ValueError(f"{path.name}, step {step['order']}: {'; '.join(problems)}")
            ProtocolStep.objects.update_or_create(
                protocol=protocol,
                order=step["order"],
                defaults={
                    "kind": step["kind"],
                    "label": step["label"],
                    "anchor": step["anchor"],
                    "day_offset": step["day_offset"],
                    "start_time": datetime.time.fromisoformat(step["start_time"]),
                    "duration_minutes": step["duration_minutes"],
                    "is_group": step["is_group"],
                    "instruments_due": step["instruments_due"],
                    # Older migrations' historical models have no monitoring column.
                    **({"monitoring": step.get("monitoring", {})} if has_monitoring else {}),
                },
            )
        protocol.steps.filter(order__gt=len(data["steps"])).delete()
        loaded.append(protocol)
    return loaded
