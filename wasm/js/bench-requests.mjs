// The karlton_call requests every benchmark times (Rust reads the same file's JSON block).
export const REQUESTS = {
  // BENCH-REQUESTS-BEGIN
  "decide": "{\"op\":\"decide\",\"now_ms\":1700000000000,\"soft_at\":1700000010000,\"hard_at\":1700000060000,\"load_ms\":250,\"policy\":{\"soft_ttl_ms\":10000,\"hard_ttl_ms\":60000,\"early_refresh\":1.0,\"stale_if_error_ms\":3600000},\"rand\":\"12345678901234567\"}",
  "key_build": "{\"op\":\"key_build\",\"namespace\":\"products\",\"segments\":[\"42\",\"detail\"],\"params_json\":\"{\\\"lang\\\":\\\"en\\\",\\\"currency\\\":\\\"eur\\\"}\",\"version\":7}"
  // BENCH-REQUESTS-END
};
