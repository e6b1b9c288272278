"""Pydantic models of the custom resources the production overlay uses, for the fields it uses, written from
the operators' API references (extra="forbid": a misspelt or unknown field fails, as the operators' CRD schemas
would reject it on apply):

- CloudNativePG `Cluster` (postgresql.cnpg.io/v1): cloudnative-pg.io/documentation, "API Reference",
  ClusterSpec, BootstrapInitDB, PostgresConfiguration, SynchronousReplicaConfiguration, StorageConfiguration,
  AffinityConfiguration.
- RabbitMQ Cluster Operator `RabbitmqCluster` (rabbitmq.com/v1beta1): rabbitmq/cluster-operator
  api/v1beta1/rabbitmqcluster_types.go (RabbitmqClusterSpec, RabbitmqClusterConfigurationSpec,
  RabbitmqClusterPersistenceSpec, SecretBackend).
- KEDA `ScaledObject` (keda.sh/v1alpha1): keda.sh/docs, "Scaling Deployments" (ScaledObject spec) and the
  RabbitMQ Queue scaler's trigger metadata.
- cert-manager `Issuer` (cert-manager.io/v1): cert-manager.io/docs, "API reference", IssuerSpec, ACMEIssuer,
  ACMEChallengeSolverHTTP01Ingress.

Fields of embedded core types (affinity, resources, HPA behaviour) are checked against Kubernetes' own schema.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, HttpUrl, model_validator

from tests.k8s.core_schemas import definition_errors

QUANTITY = r"^[0-9]+(\.[0-9]+)?(m|k|Ki|Mi|Gi|Ti|M|G|T)?$"


def core_type(definition: str) -> AfterValidator:
    """A field holding the core Kubernetes type `definition`, validated against its OpenAPI schema."""

    def check(value: dict[str, Any]) -> dict[str, Any]:
        errors = definition_errors(value, definition)
        if errors:
            raise ValueError(f"not a valid {definition}: " + "; ".join(errors))
        return value

    return AfterValidator(check)


Affinity = Annotated[dict[str, Any], core_type("io.k8s.api.core.v1.Affinity")]
Resources = Annotated[dict[str, Any], core_type("io.k8s.api.core.v1.ResourceRequirements")]
HpaBehavior = Annotated[dict[str, Any], core_type("io.k8s.api.autoscaling.v2.HorizontalPodAutoscalerBehavior")]
Quantity = Annotated[str, Field(pattern=QUANTITY)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Metadata(Strict):
    name: str = Field(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=63)
    namespace: str
    labels: dict[str, str] = {}
    annotations: dict[str, str] = {}


# ---- CloudNativePG Cluster ----


class InitDb(Strict):
    database: str
    owner: str
    secret: dict[str, str] | None = None


class CnpgBootstrap(Strict):
    initdb: InitDb


class Synchronous(Strict):
    method: Literal["any", "first"]
    number: int = Field(ge=1)
    dataDurability: Literal["required", "preferred"] | None = None  # noqa: N815 - the API's field name


class PostgresConfiguration(Strict):
    parameters: dict[str, str] = {}
    synchronous: Synchronous | None = None


class CnpgStorage(Strict):
    size: Quantity
    storageClass: str | None = None  # noqa: N815


class CnpgAffinity(Strict):
    enablePodAntiAffinity: bool = True  # noqa: N815
    topologyKey: str | None = None  # noqa: N815
    podAntiAffinityType: Literal["preferred", "required"] | None = None  # noqa: N815


class CnpgClusterSpec(Strict):
    instances: int = Field(ge=1)
    imageName: str | None = Field(default=None, pattern=r":[A-Za-z0-9._-]+$")  # noqa: N815 - pinned by tag
    primaryUpdateStrategy: Literal["unsupervised", "supervised"] | None = None  # noqa: N815
    bootstrap: CnpgBootstrap
    postgresql: PostgresConfiguration | None = None
    storage: CnpgStorage
    resources: Resources | None = None
    affinity: CnpgAffinity | None = None

    @model_validator(mode="after")
    def _replicas_for_synchronous(self) -> CnpgClusterSpec:
        sync = self.postgresql.synchronous if self.postgresql else None
        if sync is not None and sync.number > self.instances - 1:
            raise ValueError(f"synchronous.number {sync.number} needs at least {sync.number + 1} instances")
        return self


class CnpgCluster(Strict):
    apiVersion: Literal["postgresql.cnpg.io/v1"]  # noqa: N815
    kind: Literal["Cluster"]
    metadata: Metadata
    spec: CnpgClusterSpec


# ---- RabbitmqCluster ----


class RabbitmqConfiguration(Strict):
    additionalPlugins: list[Annotated[str, Field(pattern=r"^\w+$")]] = []  # noqa: N815
    additionalConfig: str = Field(default="", max_length=100_000)  # noqa: N815
    advancedConfig: str = Field(default="", max_length=100_000)  # noqa: N815

    @model_validator(mode="after")
    def _conf_lines(self) -> RabbitmqConfiguration:
        for line in self.additionalConfig.splitlines():
            if line.strip() and not line.lstrip().startswith("#") and not re.match(r"^[\w.]+\s*=\s*\S", line):
                raise ValueError(f"additionalConfig line is not `key = value` (rabbitmq.conf): {line!r}")
        return self


class RabbitmqPersistence(Strict):
    storage: Quantity | None = None
    storageClassName: str | None = None  # noqa: N815


class LocalObjectReference(Strict):
    name: str


class SecretBackend(Strict):
    externalSecret: LocalObjectReference | None = None  # noqa: N815


class RabbitmqClusterSpec(Strict):
    replicas: Literal[1, 3, 5]  # the operator tests only these (an odd count keeps a quorum in a partition)
    image: str | None = None
    resources: Resources | None = None
    persistence: RabbitmqPersistence | None = None
    rabbitmq: RabbitmqConfiguration | None = None
    secretBackend: SecretBackend | None = None  # noqa: N815
    affinity: Affinity | None = None
    terminationGracePeriodSeconds: int | None = Field(default=None, ge=0)  # noqa: N815


class RabbitmqCluster(Strict):
    apiVersion: Literal["rabbitmq.com/v1beta1"]  # noqa: N815
    kind: Literal["RabbitmqCluster"]
    metadata: Metadata
    spec: RabbitmqClusterSpec


# ---- KEDA ScaledObject ----


class ScaleTargetRef(Strict):
    name: str
    kind: str | None = None
    apiVersion: str | None = None  # noqa: N815
    envSourceContainerName: str | None = None  # noqa: N815


class Fallback(Strict):
    failureThreshold: int = Field(ge=1)  # noqa: N815
    replicas: int = Field(ge=0)


class HpaConfig(Strict):
    name: str | None = None
    behavior: HpaBehavior | None = None


class Advanced(Strict):
    restoreToOriginalReplicaCount: bool | None = None  # noqa: N815
    horizontalPodAutoscalerConfig: HpaConfig | None = None  # noqa: N815


def _positive_number(value: str) -> str:
    if float(value) <= 0:
        raise ValueError(f"{value!r} must be a positive number")
    return value


class RabbitmqTriggerMetadata(Strict):
    """The RabbitMQ Queue scaler's metadata (string values, as KEDA takes them)."""

    host: str | None = None
    hostFromEnv: str | None = None  # noqa: N815
    protocol: Literal["auto", "amqp", "http"] = "auto"
    queueName: str  # noqa: N815
    mode: Literal["QueueLength", "MessageRate"]
    value: Annotated[str, AfterValidator(_positive_number)]
    activationValue: str | None = None  # noqa: N815
    vhostName: str | None = None  # noqa: N815

    @model_validator(mode="after")
    def _one_host(self) -> RabbitmqTriggerMetadata:
        if (self.host is None) == (self.hostFromEnv is None):
            raise ValueError("exactly one of host and hostFromEnv (or a TriggerAuthentication, not used here)")
        return self


class RabbitmqTrigger(Strict):
    type: Literal["rabbitmq"]
    name: str | None = None
    metadata: RabbitmqTriggerMetadata
    metricType: Literal["AverageValue", "Value"] | None = None  # noqa: N815


class ScaledObjectSpec(Strict):
    scaleTargetRef: ScaleTargetRef  # noqa: N815
    pollingInterval: int = Field(default=30, ge=1)  # noqa: N815
    cooldownPeriod: int = Field(default=300, ge=0)  # noqa: N815
    minReplicaCount: int = Field(default=0, ge=0)  # noqa: N815
    maxReplicaCount: int = Field(default=100, ge=1)  # noqa: N815
    fallback: Fallback | None = None
    advanced: Advanced | None = None
    triggers: list[RabbitmqTrigger] = Field(min_length=1)

    @model_validator(mode="after")
    def _bounds(self) -> ScaledObjectSpec:
        if self.minReplicaCount > self.maxReplicaCount:
            raise ValueError("minReplicaCount is above maxReplicaCount")
        if self.fallback and not self.minReplicaCount <= self.fallback.replicas <= self.maxReplicaCount:
            raise ValueError("fallback.replicas lies outside minReplicaCount..maxReplicaCount")
        return self


class ScaledObject(Strict):
    apiVersion: Literal["keda.sh/v1alpha1"]  # noqa: N815
    kind: Literal["ScaledObject"]
    metadata: Metadata
    spec: ScaledObjectSpec


# ---- cert-manager Issuer ----


class SecretKeySelector(Strict):
    name: str
    key: str | None = None


class Http01Ingress(Strict):
    ingressClassName: str | None = None  # noqa: N815
    class_: str | None = Field(default=None, alias="class")
    name: str | None = None


class Http01Solver(Strict):
    ingress: Http01Ingress


class AcmeSolver(Strict):
    http01: Http01Solver


class AcmeIssuer(Strict):
    server: HttpUrl
    email: str = Field(pattern=r"^[^@\s]+@[^@\s]+$")
    privateKeySecretRef: SecretKeySelector  # noqa: N815
    solvers: list[AcmeSolver] = Field(min_length=1)


class IssuerSpec(Strict):
    acme: AcmeIssuer


class Issuer(Strict):
    apiVersion: Literal["cert-manager.io/v1"]  # noqa: N815
    kind: Literal["Issuer"]
    metadata: Metadata
    spec: IssuerSpec


MODELS: dict[tuple[str, str], type[Strict]] = {
    ("postgresql.cnpg.io/v1", "Cluster"): CnpgCluster,
    ("rabbitmq.com/v1beta1", "RabbitmqCluster"): RabbitmqCluster,
    ("keda.sh/v1alpha1", "ScaledObject"): ScaledObject,
    ("cert-manager.io/v1", "Issuer"): Issuer,
}
"""The model of each custom resource kind the overlays may use; any other kind fails the check."""
