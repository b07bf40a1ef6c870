import { App as AntApp, Button, Card, Checkbox, Form, Input, Modal, Select, Space, Table, Tag, Typography } from "antd";
import { useCallback, useEffect, useState } from "react";
import { api, type Role, type User } from "../api";
import { RefusalView } from "../components/RefusalView";
import { useI18n } from "../i18n";

interface Account extends User {
  disabled?: boolean;
}

interface AccountForm {
  username?: string;
  display_name: string;
  password?: string;
  roles: Role[];
  shops?: string[];
  disabled?: boolean;
}

const ROLES: Role[] = ["support", "ops", "admin"];

/** Admins manage staff accounts: who may sign in, with which roles, for which shops (none: every shop). */
export function AccountsPage() {
  const { t, label } = useI18n();
  const { message } = AntApp.useApp();
  const [accounts, setAccounts] = useState<Account[]>([]);
  const [error, setError] = useState<unknown>(null);
  const [editing, setEditing] = useState<Account | "new" | null>(null);
  const [refusal, setRefusal] = useState<unknown>(null);
  const [form] = Form.useForm<AccountForm>();

  const load = useCallback(async () => {
    try {
      const body = await api.get<Account[] | { items: Account[] }>("/api/accounts");
      setAccounts(Array.isArray(body) ? body : body.items);
    } catch (refused) {
      setError(refused);
    }
  }, []);

  useEffect(() => {
    void load();
  }, [load]);

  const open = (account: Account | "new") => {
    setRefusal(null);
    form.resetFields();
    if (account !== "new") form.setFieldsValue({ ...account, shops: account.shops ?? [] });
    setEditing(account);
  };

  const save = async () => {
    const values = await form.validateFields();
    const shops = values.shops && values.shops.length ? values.shops : null;
    try {
      if (editing === "new") {
        await api.post("/api/accounts", { ...values, shops });
      } else if (editing) {
        const { username: _ignored, password, ...changes } = values;
        await api.request("PATCH", `/api/accounts/${encodeURIComponent(editing.username)}`, {
          ...changes,
          shops,
          ...(password ? { password } : {}),
        });
      }
      message.success(t("done"));
      setEditing(null);
      await load();
    } catch (refused) {
      setRefusal(refused);
    }
  };

  return (
    <Space direction="vertical" style={{ width: "100%" }} size="middle">
      <Typography.Title level={3} style={{ margin: 0 }}>
        {t("accounts")}
      </Typography.Title>
      {error !== null && <RefusalView error={error} />}
      <Card size="small" extra={<Button onClick={() => open("new")}>{t("create_account")}</Button>}>
        <Table<Account>
          size="small"
          rowKey="username"
          dataSource={accounts}
          columns={[
            { title: t("username"), dataIndex: "username" },
            { title: t("display_name"), dataIndex: "display_name" },
            { title: t("roles"), render: (_, a) => a.roles.map((r) => <Tag key={r}>{label("role", r)}</Tag>) },
            { title: t("shops"), render: (_, a) => (a.shops ? a.shops.join(", ") : t("all_shops")) },
            { title: t("disabled"), render: (_, a) => (a.disabled ? t("yes") : t("no")) },
            {
              title: t("actions"),
              render: (_, a) => (
                <Button size="small" onClick={() => open(a)} aria-label={`${t("save")} ${a.username}`}>
                  {t("open")}
                </Button>
              ),
            },
          ]}
        />
      </Card>
      <Modal
        open={editing !== null}
        title={editing === "new" ? t("create_account") : editing?.username}
        okText={t("save")}
        cancelText={t("cancel")}
        onOk={() => void save()}
        onCancel={() => setEditing(null)}
      >
        <Form form={form} layout="vertical">
          {editing === "new" && (
            <Form.Item name="username" label={t("username")} rules={[{ required: true, message: t("required") }]}>
              <Input autoComplete="off" />
            </Form.Item>
          )}
          <Form.Item name="display_name" label={t("display_name")} rules={[{ required: true, message: t("required") }]}>
            <Input />
          </Form.Item>
          <Form.Item
            name="password"
            label={t("password")}
            rules={editing === "new" ? [{ required: true, message: t("required") }] : []}
          >
            <Input.Password autoComplete="new-password" />
          </Form.Item>
          <Form.Item name="roles" label={t("roles")} rules={[{ required: true, message: t("required") }]}>
            <Checkbox.Group options={ROLES.map((r) => ({ value: r, label: label("role", r) }))} />
          </Form.Item>
          <Form.Item name="shops" label={`${t("shops")} (${t("all_shops")}: —)`}>
            <Select mode="tags" tokenSeparators={[",", " "]} />
          </Form.Item>
          {editing !== "new" && (
            <Form.Item name="disabled" valuePropName="checked">
              <Checkbox>{t("disabled")}</Checkbox>
            </Form.Item>
          )}
        </Form>
        {refusal !== null && <RefusalView error={refusal} />}
      </Modal>
    </Space>
  );
}
