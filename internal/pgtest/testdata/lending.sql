-- lending: the test suite's own sample database, a tool-lending library.
--
-- Written for pgundo's tests (not derived from any other sample schema) so
-- that a fresh clone exercises a realistic schema without outside files.
-- It holds what makes undo hard: a partitioned table with a default
-- partition (rows move between partitions when their date changes), enums,
-- domains, arrays, tsvector kept by a trigger, bytea, a generated column,
-- BEFORE UPDATE stamping triggers, ON DELETE CASCADE / SET NULL and
-- ON UPDATE CASCADE keys (one self-referencing), and a table without a key
-- holding duplicate rows. Plain SQL (no psql meta-commands, no COPY), so it
-- runs through any driver's simple protocol. Every value is computed from
-- generate_series: the data are the same on every run and every server.
--
-- The stamping triggers are deterministic (OLD.updated + 1 second, never
-- now()) so that two databases running the same changes at different times
-- end up with equal rows; they still change the row, as the triggers of a
-- real application do, which is what an undo must not let fire again.

CREATE TYPE public.tool_condition AS ENUM ('new', 'good', 'worn', 'broken');
CREATE DOMAIN public.email AS text CHECK (VALUE ~ '^[^@[:space:]]+@[^@[:space:]]+$');
CREATE DOMAIN public.fee AS numeric(8,2) CHECK (VALUE >= 0);

CREATE FUNCTION public.stamp_updated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	NEW.updated := OLD.updated + interval '1 second';
	RETURN NEW;
END $$;

CREATE FUNCTION public.tool_search() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	NEW.search := to_tsvector('simple', NEW.name || ' ' || NEW.description || ' ' || array_to_string(NEW.keywords, ' '));
	RETURN NEW;
END $$;

CREATE TABLE public.branch (
	code    text PRIMARY KEY,
	name    text NOT NULL UNIQUE,
	opens   time NOT NULL,
	updated timestamptz NOT NULL
);
CREATE TRIGGER branch_updated BEFORE UPDATE ON public.branch FOR EACH ROW EXECUTE FUNCTION public.stamp_updated();

CREATE TABLE public.member (
	member_id   int PRIMARY KEY,
	branch_code text NOT NULL REFERENCES public.branch ON UPDATE CASCADE,
	full_name   text NOT NULL,
	email       public.email,
	phones      text[] NOT NULL DEFAULT '{}',
	photo       bytea,
	active      boolean NOT NULL DEFAULT true,
	joined      date NOT NULL,
	updated     timestamptz NOT NULL
);
CREATE TRIGGER member_updated BEFORE UPDATE ON public.member FOR EACH ROW EXECUTE FUNCTION public.stamp_updated();

CREATE TABLE public.category (
	category_id int PRIMARY KEY,
	name        text NOT NULL UNIQUE,
	parent_id   int REFERENCES public.category ON DELETE SET NULL ON UPDATE CASCADE
);

CREATE TABLE public.tool (
	tool_id     int PRIMARY KEY,
	category_id int NOT NULL REFERENCES public.category ON UPDATE CASCADE,
	name        text NOT NULL,
	description text NOT NULL,
	keywords    text[] NOT NULL DEFAULT '{}',
	condition   public.tool_condition NOT NULL DEFAULT 'good',
	deposit     public.fee NOT NULL,
	daily_fee   public.fee NOT NULL,
	weekly_fee  numeric(8,2) GENERATED ALWAYS AS (daily_fee * 5) STORED,
	search      tsvector,
	manual      bytea,
	updated     timestamptz NOT NULL
);
CREATE TRIGGER tool_search BEFORE INSERT OR UPDATE ON public.tool FOR EACH ROW EXECUTE FUNCTION public.tool_search();
CREATE TRIGGER tool_updated BEFORE UPDATE ON public.tool FOR EACH ROW EXECUTE FUNCTION public.stamp_updated();
CREATE INDEX tool_search_idx ON public.tool USING gin (search);

CREATE TABLE public.tool_tag (
	tool_id int REFERENCES public.tool ON DELETE CASCADE ON UPDATE CASCADE,
	tag     text,
	PRIMARY KEY (tool_id, tag)
);

-- Loans by the year they went out; the key includes the partition key.
CREATE TABLE public.loan (
	loan_id        int NOT NULL,
	tool_id        int NOT NULL REFERENCES public.tool ON DELETE CASCADE ON UPDATE CASCADE,
	member_id      int NOT NULL REFERENCES public.member ON DELETE CASCADE,
	out_at         timestamptz NOT NULL,
	back_at        timestamptz,
	charged        public.fee,
	condition_back public.tool_condition,
	PRIMARY KEY (loan_id, out_at)
) PARTITION BY RANGE (out_at);
CREATE TABLE public.loan_2023 PARTITION OF public.loan FOR VALUES FROM ('2023-01-01 00:00+00') TO ('2024-01-01 00:00+00');
CREATE TABLE public.loan_2024 PARTITION OF public.loan FOR VALUES FROM ('2024-01-01 00:00+00') TO ('2025-01-01 00:00+00');
CREATE TABLE public.loan_other PARTITION OF public.loan DEFAULT;

-- The till roll: no key, and the same entry may be there twice.
CREATE TABLE public.ledger (
	member_id int,
	amount    numeric(8,2) NOT NULL,
	memo      text,
	booked    date NOT NULL
);

INSERT INTO public.branch (code, name, opens, updated) VALUES
	('N', 'North', '08:00', '2024-01-01 09:00+00'),
	('S', 'South "Harbour"', '09:30', '2024-01-01 09:00+00'),
	('E', 'East – Markt', '07:45', '2024-01-01 09:00+00'),
	('W', 'O''Reilly Yard', '10:00', '2024-01-01 09:00+00');

INSERT INTO public.category (category_id, name, parent_id) VALUES
	(1, 'Garden', NULL), (2, 'Workshop', NULL), (3, 'Kitchen', NULL),
	(4, 'Lawn mowers', 1), (5, 'Hedge trimmers', 1), (6, 'Drills', 2), (7, 'Saws', 2),
	(8, 'Sanders', 2), (9, 'Mixers', 3), (10, 'Jam & preserves', 3), (11, 'Ladders', NULL),
	(12, 'Retired', NULL);

INSERT INTO public.member (member_id, branch_code, full_name, email, phones, photo, active, joined, updated)
SELECT g,
       (ARRAY['N', 'S', 'E', 'W'])[g % 4 + 1],
       (ARRAY['Ana', 'Björn', 'Chloé', 'Dmitri', 'Eun-ji', 'Fatima', 'Gary', 'Hiro'])[g % 8 + 1] || ' ' ||
       (ARRAY['Smith', 'O''Brien', 'Müller', 'de la Cruz', 'Nakamura', 'Okafor', 'Nowak'])[g % 7 + 1],
       CASE WHEN g % 17 <> 0 THEN 'Member.' || g || '@Example.org' END,
       CASE WHEN g % 5 = 0 THEN '{}'::text[] ELSE ARRAY['+44 20 7946 ' || lpad((g * 37 % 10000)::text, 4, '0')] ||
            CASE WHEN g % 3 = 0 THEN ARRAY['ext. "front desk"'] ELSE '{}'::text[] END END,
       CASE WHEN g % 6 = 0 THEN decode(md5('photo' || g), 'hex') || '\x00ff'::bytea END,
       g % 11 <> 0,
       date '2019-03-01' + g * 3,
       timestamptz '2024-01-01 09:00+00' + g * interval '17 minutes'
  FROM generate_series(1, 240) g;

INSERT INTO public.tool (tool_id, category_id, name, description, keywords, condition, deposit, daily_fee, manual, updated)
SELECT g,
       4 + g % 8, -- categories 4..11
       (ARRAY['Mower', 'Trimmer', 'Drill', 'Saw', 'Sander', 'Mixer', 'Jam pan', 'Ladder'])[g % 8 + 1] || ' #' || g,
       'A ' || (ARRAY['sturdy', 'light', 'cordless', 'vintage', 'heavy-duty'])[g % 5 + 1] || ' tool; handle with care.'
         || CASE WHEN g % 9 = 0 THEN E'\nSee the manual\\appendix.' ELSE '' END,
       CASE WHEN g % 4 = 0 THEN '{}'::text[] ELSE ARRAY['tool', 'no' || g % 3] END,
       (ARRAY['new', 'good', 'good', 'worn'])[g % 4 + 1]::public.tool_condition,
       (10 + g % 7 * 5)::numeric,
       (1.5 + g % 5 * 0.75)::numeric,
       CASE WHEN g % 10 = 0 THEN convert_to('manual for tool ' || g || ' — €', 'UTF8') END,
       timestamptz '2024-02-01 12:00+00' + g * interval '1 hour'
  FROM generate_series(1, 160) g;

INSERT INTO public.tool_tag (tool_id, tag)
SELECT g, t FROM generate_series(1, 160) g, unnest(ARRAY['popular', 'fragile', 'outdoor']) WITH ORDINALITY AS u(t, i)
 WHERE (g + i) % 3 = 0;

INSERT INTO public.loan (loan_id, tool_id, member_id, out_at, back_at, charged, condition_back)
SELECT g,
       g % 160 + 1,
       g * 7 % 240 + 1,
       timestamptz '2022-10-01 08:00+00' + g * interval '10 hours 13 minutes',
       CASE WHEN g % 13 <> 0 THEN timestamptz '2022-10-01 08:00+00' + g * interval '10 hours 13 minutes' + (g % 9 + 1) * interval '1 day' END,
       CASE WHEN g % 13 <> 0 THEN ((g % 9 + 1) * 1.5)::numeric END,
       CASE WHEN g % 13 <> 0 THEN (ARRAY['good', 'worn', 'good', 'broken', 'good'])[g % 5 + 1]::public.tool_condition END
  FROM generate_series(1, 3000) g;

INSERT INTO public.ledger (member_id, amount, memo, booked)
SELECT g % 240 + 1,
       (g % 40 * 0.25)::numeric,
       (ARRAY['late fee', 'deposit', 'deposit back', NULL, 'repair'])[g % 5 + 1],
       date '2024-01-01' + g % 90
  FROM generate_series(1, 1200) g;

ANALYZE;
