-- 0001_base: the seed-001 agent-group tables (ext_group, ext_group_map) exactly as FSGUI
-- defines them, the columns later features need, and extensions, blacklists, VIP numbers,
-- caller memory and CDRs.
--
-- Names are not schema-qualified so a deployment may choose its schema with search_path.
-- The seed's `ALTER ... OWNER TO postgres` is left out: the migrating role owns what it creates.

-- Seed sequences, same parameters as FSGUI (ext_group ids start at 4).
CREATE SEQUENCE ext_group_id_seq
    INCREMENT 1 MINVALUE 1 MAXVALUE 9223372036854775807 START 4 CACHE 1;
CREATE SEQUENCE ext_group_map_id_seq
    INCREMENT 1 MINVALUE 1 MAXVALUE 9223372036854775807 START 1 CACHE 1;

CREATE TABLE ext_group (
    id bigint NOT NULL DEFAULT nextval('ext_group_id_seq'::regclass),
    group_name character varying(100),
    group_number character varying(50) NOT NULL,
    current_ext_number character varying(50),
    group_call_mode integer DEFAULT 5,
    group_callout_timeout integer DEFAULT 15,
    transfer_ring character varying(255) DEFAULT ''::character varying,
    black_list_ring character varying(255) DEFAULT ''::character varying,
    busy_ring character varying(255) DEFAULT ''::character varying,
    -- fsapps additions (seed 001 nway_set_ring_group, hold, wrap-up, long-wait policy, domains)
    welcome_ring character varying(255) DEFAULT ''::character varying,
    hold_music character varying(255) DEFAULT ''::character varying,
    wrapup_seconds integer,
    max_no_answer integer,
    busy_ring_repeats integer,
    blacklist_action character varying(20) DEFAULT 'hangup'::character varying,
    domain character varying(100) DEFAULT 'default'::character varying,
    CONSTRAINT "PK_GROUP_NUMBER" PRIMARY KEY (group_number),
    CONSTRAINT ext_group_call_mode_check CHECK (group_call_mode BETWEEN 0 AND 5),
    CONSTRAINT ext_group_callout_timeout_check CHECK (group_callout_timeout > 0),
    CONSTRAINT ext_group_wrapup_seconds_check CHECK (wrapup_seconds >= 0),
    CONSTRAINT ext_group_max_no_answer_check CHECK (max_no_answer > 0),
    CONSTRAINT ext_group_busy_ring_repeats_check CHECK (busy_ring_repeats >= 0),
    CONSTRAINT ext_group_blacklist_action_check
        CHECK (blacklist_action IN ('hangup', 'playback'))
);
ALTER SEQUENCE ext_group_id_seq OWNED BY ext_group.id;
CREATE INDEX ext_group_domain_idx ON ext_group (domain);

COMMENT ON TABLE ext_group IS '分机座席分组,面向110业务';
COMMENT ON COLUMN ext_group.group_name IS '组或座席组名';
COMMENT ON COLUMN ext_group.group_number IS '座席组短号';
COMMENT ON COLUMN ext_group.current_ext_number IS '当前组里接听时找到的分机,如果找不到,则再从头开始';
COMMENT ON COLUMN ext_group.group_call_mode IS '呼叫模式  
0 顺序
1 随机
2 循环
3 记忆优先+ 0
4 记忆优先+1
5 记忆优先+2';
COMMENT ON COLUMN ext_group.group_callout_timeout IS '呼叫到每个号码时的超时时长,默认15秒';
COMMENT ON COLUMN ext_group.transfer_ring IS '转接时放的音';
COMMENT ON COLUMN ext_group.black_list_ring IS '黑名单来电放的音';
COMMENT ON COLUMN ext_group.busy_ring IS '无空闲座席时放的音';
COMMENT ON COLUMN ext_group.welcome_ring IS 'welcome prompt played when a call enters the group';
COMMENT ON COLUMN ext_group.hold_music IS 'music on hold while queued; empty = global default';
COMMENT ON COLUMN ext_group.wrapup_seconds IS
    'seconds an agent stays in wrap-up (typing) after a call; NULL = global default';
COMMENT ON COLUMN ext_group.max_no_answer IS
    'consecutive unanswered offers before an agent is set no_answer; NULL = global default';
COMMENT ON COLUMN ext_group.busy_ring_repeats IS
    'long-wait policy: play busy_ring this many times then hang up, 0 = never; NULL = default';
COMMENT ON COLUMN ext_group.blacklist_action IS
    'what a blacklisted caller gets: hangup, or playback of black_list_ring then hangup';
COMMENT ON COLUMN ext_group.domain IS 'SIP domain the group belongs to';

CREATE TABLE ext_group_map (
    id bigint NOT NULL DEFAULT nextval('ext_group_map_id_seq'::regclass),
    ext_group_id bigint,
    ext_group_number character varying(50),
    ext character varying(50),
    position integer,
    CONSTRAINT ext_group_map_pkey PRIMARY KEY (id),
    CONSTRAINT ext_group_map_group_fkey FOREIGN KEY (ext_group_number)
        REFERENCES ext_group (group_number) ON UPDATE CASCADE ON DELETE CASCADE,
    CONSTRAINT ext_group_map_group_ext_key UNIQUE (ext_group_number, ext)
);
ALTER SEQUENCE ext_group_map_id_seq OWNED BY ext_group_map.id;
CREATE INDEX ext_group_map_ext_idx ON ext_group_map (ext);

COMMENT ON COLUMN ext_group_map.ext_group_id IS '分机组id';
COMMENT ON COLUMN ext_group_map.ext_group_number IS '座席组号码';
COMMENT ON COLUMN ext_group_map.ext IS '分机';
COMMENT ON COLUMN ext_group_map.position IS
    'member order (call mode 0 rings in this order; NULL sorts last, then by id)';

CREATE TABLE extensions (
    domain character varying(100) NOT NULL DEFAULT 'default'::character varying,
    number character varying(50) NOT NULL,
    job_number character varying(50),
    enabled boolean NOT NULL DEFAULT true,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT extensions_pkey PRIMARY KEY (domain, number)
);
COMMENT ON TABLE extensions IS 'agent extensions (seed 001 nway_add_ext / nway_set_ext_jobnumber)';
COMMENT ON COLUMN extensions.job_number IS '工号';

CREATE TABLE group_blacklist (
    group_number character varying(50) NOT NULL,
    number character varying(50) NOT NULL,
    note text,
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT group_blacklist_pkey PRIMARY KEY (group_number, number),
    CONSTRAINT group_blacklist_group_fkey FOREIGN KEY (group_number)
        REFERENCES ext_group (group_number) ON UPDATE CASCADE ON DELETE CASCADE
);
COMMENT ON TABLE group_blacklist IS 'callers refused by a group (和组配套的黑名单)';

CREATE TABLE group_vip (
    group_number character varying(50) NOT NULL,
    number character varying(50) NOT NULL,
    note text,
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT group_vip_pkey PRIMARY KEY (group_number, number),
    CONSTRAINT group_vip_group_fkey FOREIGN KEY (group_number)
        REFERENCES ext_group (group_number) ON UPDATE CASCADE ON DELETE CASCADE
);
COMMENT ON TABLE group_vip IS 'callers queued ahead of normal callers (level vip)';

-- No foreign key to ext_group: memory is written after a call ends, possibly after the group
-- was removed, and losing a memory row is harmless while failing that write is not.
CREATE TABLE caller_memory (
    domain character varying(100) NOT NULL DEFAULT 'default'::character varying,
    group_number character varying(50) NOT NULL,
    caller_number character varying(255) NOT NULL,
    extension character varying(50) NOT NULL,
    last_served_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT caller_memory_pkey PRIMARY KEY (domain, group_number, caller_number)
);
CREATE INDEX caller_memory_last_served_at_idx ON caller_memory (last_served_at);
COMMENT ON TABLE caller_memory IS 'which agent last served a caller (记忆优先 call modes 3-5)';

-- One row per call: the seed 001 CDR fields plus group, domain, cause, level and node.
CREATE TABLE cdr (
    uuid character varying(64) NOT NULL,
    cti_ip character varying(64),
    is_callout boolean NOT NULL DEFAULT false,
    a_caller_id_number character varying(255),
    a_destination_number character varying(255),
    a_start_stamp timestamptz,
    a_answer_stamp timestamptz,
    a_end_stamp timestamptz,
    a_duration integer,
    a_billsec integer,
    a_sip_hangup_disposition character varying(64),
    a_record_file text,
    str_no_answer_agents text,
    destination_number character varying(255),
    start_stamp timestamptz,
    answer_stamp timestamptz,
    end_stamp timestamptz,
    duration integer,
    billsec integer,
    flag text,
    group_number character varying(50),
    domain character varying(100) DEFAULT 'default'::character varying,
    hangup_cause character varying(64),
    level character varying(16) DEFAULT 'normal'::character varying,
    node character varying(100),
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT cdr_pkey PRIMARY KEY (uuid)
);
CREATE INDEX cdr_a_start_stamp_idx ON cdr (a_start_stamp);
CREATE INDEX cdr_destination_number_idx ON cdr (destination_number);
CREATE INDEX cdr_group_number_a_start_stamp_idx ON cdr (group_number, a_start_stamp);
COMMENT ON TABLE cdr IS '通话详单: one row per call (seed 001 cdr_* message)';
COMMENT ON COLUMN cdr.a_sip_hangup_disposition IS '哪边挂边 (recv_bye, send_bye, ...)';
COMMENT ON COLUMN cdr.str_no_answer_agents IS '没有应答的座席号码';
COMMENT ON COLUMN cdr.destination_number IS '座席号码: the agent who answered';
COMMENT ON COLUMN cdr.start_stamp IS '开始呼叫座席的时间';
COMMENT ON COLUMN cdr.answer_stamp IS '座席应答的时间';
COMMENT ON COLUMN cdr.end_stamp IS '座席挂机时间';
COMMENT ON COLUMN cdr.flag IS 'outcome label, e.g. 单座席无应答';
COMMENT ON COLUMN cdr.level IS 'normal or vip';

-- One row per agent offered the call; (cdr_uuid, attempt_no) is unique so a CDR delivered
-- twice (spool replay) is written once with INSERT ... ON CONFLICT DO NOTHING.
CREATE TABLE cdr_agent_attempt (
    id bigserial NOT NULL,
    cdr_uuid character varying(64) NOT NULL,
    attempt_no integer NOT NULL,
    extension character varying(50),
    leg_uuid character varying(64),
    start_stamp timestamptz,
    answer_stamp timestamptz,
    end_stamp timestamptz,
    duration integer,
    billsec integer,
    result character varying(20) NOT NULL,
    hangup_cause character varying(64),
    CONSTRAINT cdr_agent_attempt_pkey PRIMARY KEY (id),
    CONSTRAINT cdr_agent_attempt_cdr_fkey FOREIGN KEY (cdr_uuid)
        REFERENCES cdr (uuid) ON DELETE CASCADE,
    CONSTRAINT cdr_agent_attempt_cdr_uuid_attempt_no_key UNIQUE (cdr_uuid, attempt_no),
    CONSTRAINT cdr_agent_attempt_result_check CHECK (result IN (
        'answered', 'no_answer', 'busy', 'rejected', 'unregistered', 'caller_cancel', 'failed'))
);
CREATE INDEX cdr_agent_attempt_extension_idx ON cdr_agent_attempt (extension, start_stamp);
COMMENT ON TABLE cdr_agent_attempt IS 'one row per agent attempt of a queued call';
