"""Serializers of hooks (migrations_app.hooks), shared by the plan and campaign APIs: a
hook is shown with what it calls and never with its secret."""

from rest_framework import serializers

from migrations_app.models import Hook


class HookSerializer(serializers.ModelSerializer):
    class Meta:
        model = Hook
        fields = ["id", "event", "kind", "url", "command", "args", "timeout_s", "on_failure"]


class HookWriteSerializer(serializers.Serializer):
    event = serializers.ChoiceField(choices=Hook.Event.choices)
    kind = serializers.ChoiceField(choices=Hook.Kind.choices)
    url = serializers.CharField(max_length=500, required=False, allow_blank=True, default="")
    command = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")
    args = serializers.ListField(
        child=serializers.CharField(max_length=500), required=False, default=list
    )
    timeout_s = serializers.IntegerField(required=False, default=30)
    on_failure = serializers.ChoiceField(
        choices=Hook.OnFailure.choices, required=False, default="continue"
    )
