-- The role and the database that tuner's workers and dashboard use.
--
-- The postgres image runs this once, when it initialises an empty data volume: psql executes
-- every /docker-entrypoint-initdb.d/*.sql as POSTGRES_USER, with the container's environment.
-- The same file sets up any other server, a managed one included, from an admin login:
--
--   TUNER_DB_USER=tuner TUNER_DB_PASSWORD=... TUNER_DB_NAME=tuner \
--     psql "host=db.example.com user=admin dbname=postgres sslmode=require" -f 01-tuner.sql
--
-- Re-running it changes nothing that exists. The role is no superuser: it owns its database,
-- so it may create Optuna's tables and tuner's artifact table there, and nothing else.
-- Needs psql 15 or newer (\getenv).

\set ON_ERROR_STOP on

\getenv tuner_user TUNER_DB_USER
\getenv tuner_password TUNER_DB_PASSWORD
\getenv tuner_db TUNER_DB_NAME
\if :{?tuner_user}
\else
  \set tuner_user tuner
\endif
\if :{?tuner_db}
\else
  \set tuner_db tuner
\endif
\if :{?tuner_password}
\else
  \echo 'storage/init/01-tuner.sql: set TUNER_DB_PASSWORD (see .env.example)'
  DO $$ BEGIN RAISE EXCEPTION 'TUNER_DB_PASSWORD is not set'; END $$;
\endif

SELECT format('CREATE ROLE %I LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD %L',
              :'tuner_user', :'tuner_password')
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'tuner_user')
\gexec

-- A non-superuser admin (a managed server's) may only give a database to a role it is a
-- member of.
SELECT format('GRANT %I TO CURRENT_USER', :'tuner_user')
 WHERE NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)
   AND NOT pg_has_role(current_user, :'tuner_user', 'MEMBER')
\gexec

SELECT format('CREATE DATABASE %I OWNER %I', :'tuner_db', :'tuner_user')
 WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'tuner_db')
\gexec

-- Only tuner's role connects to tuner's database.
SELECT format('REVOKE ALL ON DATABASE %I FROM PUBLIC', :'tuner_db')
\gexec
