def test_migrate__template_has_toolkit(conn):
    row = conn.execute("SELECT to_regclass('plunk_sql.recipients') IS NOT NULL").fetchone()
    assert row[0]
