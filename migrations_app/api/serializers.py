"""Serializers of the plan API: shapes of plans, items, validation runs and action inputs."""

from rest_framework import serializers

from migrations_app.models import CheckResult, MigrationPlan, PlanItem, ValidationRun


class PlanSerializer(serializers.ModelSerializer):
    item_count = serializers.IntegerField(read_only=True, default=None)
    unplaced_count = serializers.IntegerField(read_only=True, default=None)

    class Meta:
        model = MigrationPlan
        fields = [
            "id",
            "name",
            "description",
            "change_ticket",
            "window_start",
            "window_end",
            "policy",
            "status",
            "status_reason",
            "author_name",
            "version",
            "content_hash",
            "hold",
            "item_count",
            "unplaced_count",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class PlanDetailSerializer(PlanSerializer):
    effective_policy = serializers.SerializerMethodField()

    class Meta(PlanSerializer.Meta):
        fields = PlanSerializer.Meta.fields + ["effective_policy"]
        read_only_fields = fields

    def get_effective_policy(self, plan) -> dict:
        return plan.get_policy().to_dict()


class PlanWriteSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=200)
    description = serializers.CharField(required=False, allow_blank=True, default="")
    change_ticket = serializers.CharField(
        required=False, allow_blank=True, default="", max_length=100
    )
    window_start = serializers.DateTimeField(required=False, allow_null=True, default=None)
    window_end = serializers.DateTimeField(required=False, allow_null=True, default=None)
    policy = serializers.JSONField(required=False, default=dict)


class ItemSerializer(serializers.ModelSerializer):
    vm_name = serializers.CharField(source="vm.name", read_only=True)
    source_host_name = serializers.CharField(source="source_host.name", read_only=True)
    destination_host_name = serializers.CharField(
        source="destination_host.name", read_only=True, default=None
    )

    class Meta:
        model = PlanItem
        fields = [
            "id",
            "position",
            "vm",
            "vm_name",
            "source_host",
            "source_host_name",
            "destination_host",
            "destination_host_name",
            "destination_chosen_by",
            "mode",
            "storage_map",
            "network_map",
            "policy_overrides",
            "placement_note",
            "wave",
            "status",
            "status_reason",
            "held_by",
        ]
        read_only_fields = fields


class ItemsAddSerializer(serializers.Serializer):
    vms = serializers.ListField(
        child=serializers.IntegerField(), min_length=1, max_length=20000, help_text="VM ids"
    )
    destination = serializers.IntegerField(required=False, allow_null=True, default=None)
    mode = serializers.CharField(required=False, default=PlanItem.Mode.LIVE)


class ItemUpdateSerializer(serializers.Serializer):
    destination = serializers.IntegerField(required=False, allow_null=True)
    mode = serializers.CharField(required=False)
    storage_map = serializers.JSONField(required=False)
    network_map = serializers.JSONField(required=False)
    policy_overrides = serializers.JSONField(required=False)
    wave = serializers.IntegerField(
        required=False,
        min_value=0,
        max_value=100,
        help_text="starts only when every item of the earlier waves completed",
    )


class EvacuateSerializer(serializers.Serializer):
    host = serializers.CharField(help_text="host id or name")


class MoveToGroupSerializer(serializers.Serializer):
    vms = serializers.ListField(child=serializers.IntegerField(), min_length=1, max_length=20000)
    group = serializers.CharField(max_length=100)


class PlaceSerializer(serializers.Serializer):
    replace = serializers.BooleanField(required=False, default=False)


class CheckResultSerializer(serializers.ModelSerializer):
    class Meta:
        model = CheckResult
        fields = ["id", "item", "vm_name", "check_id", "severity", "message", "remedy", "evidence"]
        read_only_fields = fields


class ValidationRunSerializer(serializers.ModelSerializer):
    passed = serializers.BooleanField(read_only=True)
    results = serializers.SerializerMethodField()

    class Meta:
        model = ValidationRun
        fields = [
            "id",
            "plan",
            "created_at",
            "plan_version",
            "content_hash",
            "passed",
            "blockers",
            "warnings",
            "infos",
            "live",
            "estimate",
            "results",
        ]
        read_only_fields = fields

    def get_results(self, run) -> list:
        wanted = self.context.get("severities")
        rows = [r for r in run.results.all() if not wanted or r.severity in wanted]
        return CheckResultSerializer(rows, many=True).data
