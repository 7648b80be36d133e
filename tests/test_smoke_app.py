from starlette.testclient import TestClient

from tests.conftest import OWNER, bearer


def test_owner_lists_the_demo_org_keys_newest_first(client: TestClient) -> None:
    response = client.get("/organization/org-acme/key", headers=bearer(OWNER))
    assert response.status_code == 200
    assert [k["id"] for k in response.json()["data"]] == [
        "orgkey-acme-3",
        "orgkey-acme-2",
        "orgkey-acme-1",
    ]
