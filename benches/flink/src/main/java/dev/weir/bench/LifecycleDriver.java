package dev.weir.bench;

import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.util.HashMap;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import org.apache.flink.api.common.JobID;
import org.apache.flink.api.common.JobStatus;
import org.apache.flink.configuration.CheckpointingOptions;
import org.apache.flink.configuration.Configuration;
import org.apache.flink.configuration.StateBackendOptions;
import org.apache.flink.core.execution.SavepointFormatType;
import org.apache.flink.runtime.jobgraph.SavepointRestoreSettings;
import org.apache.flink.runtime.minicluster.MiniCluster;
import org.apache.flink.runtime.minicluster.MiniClusterConfiguration;
import org.apache.flink.streaming.api.environment.StreamExecutionEnvironment;
import org.apache.flink.streaming.api.graph.StreamGraph;

/**
 * Runs the velocity job in a local MiniCluster and performs its life-cycle operations on
 * command, one a line on stdin, answering one line each on stdout (logs go to stderr):
 *
 * <pre>
 *   start VERSION [SAVEPOINT]  -> "started JOBID MS"      (submitted and RUNNING)
 *   savepoint                  -> "savepoint PATH MS"     (triggerSavepoint, job keeps running)
 *   stop                       -> "stopped PATH MS"       (stopWithSavepoint, no drain)
 *   quit                       -> "bye"
 * </pre>
 *
 * MS is the time from the request to the operation's completion as Flink reports it. A failed
 * command answers "error MESSAGE". The Rust bench (lifecycle-bench --system flink) drives it.
 */
public final class LifecycleDriver {
  /** Bound on any one operation. */
  private static final long OPERATION_TIMEOUT_S = 600;
  /** Pause between looks at the job's status while waiting for RUNNING. */
  private static final long STATUS_POLL_MS = 10;

  private LifecycleDriver() {}

  public static void main(String[] argv) throws Exception {
    Map<String, String> args = parseArgs(argv);
    String dir = args.get("dir");
    VelocityJob.Settings settings =
        new VelocityJob.Settings(
            args.get("bootstrap"),
            args.get("source"),
            args.get("sink"),
            Integer.parseInt(args.getOrDefault("parallelism", "2")),
            Long.parseLong(args.getOrDefault("window-ms", "1000")),
            Long.parseLong(args.get("out-of-orderness-ms")),
            Long.parseLong(args.getOrDefault("checkpoint-ms", "500")),
            "flink-lifecycle-bench");
    Configuration conf = new Configuration();
    conf.set(StateBackendOptions.STATE_BACKEND, args.getOrDefault("backend", "hashmap"));
    conf.set(CheckpointingOptions.CHECKPOINTS_DIRECTORY, "file://" + dir + "/checkpoints");
    conf.set(CheckpointingOptions.SAVEPOINT_DIRECTORY, "file://" + dir + "/savepoints");
    MiniClusterConfiguration mc =
        new MiniClusterConfiguration.Builder()
            .setConfiguration(conf)
            .setNumTaskManagers(1)
            .setNumSlotsPerTaskManager(settings.parallelism())
            .build();
    try (MiniCluster cluster = new MiniCluster(mc)) {
      cluster.start();
      System.out.println("ready");
      System.out.flush();
      serve(cluster, conf, settings, dir);
    }
  }

  private static void serve(
      MiniCluster cluster, Configuration conf, VelocityJob.Settings settings, String dir)
      throws Exception {
    BufferedReader in =
        new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
    JobID job = null;
    String line;
    while ((line = in.readLine()) != null) {
      String[] words = line.trim().split("\\s+");
      try {
        switch (words[0]) {
          case "start" -> {
            long t0 = System.nanoTime();
            StreamExecutionEnvironment env = StreamExecutionEnvironment.getExecutionEnvironment(conf);
            StreamGraph graph = VelocityJob.build(env, settings, Integer.parseInt(words[1]));
            if (words.length > 2) {
              graph.setSavepointRestoreSettings(SavepointRestoreSettings.forPath(words[2], false));
            }
            job = cluster.submitJob(graph).get(OPERATION_TIMEOUT_S, TimeUnit.SECONDS).getJobID();
            waitRunning(cluster, job);
            answer("started " + job + " " + millisSince(t0));
          }
          case "savepoint" -> {
            long t0 = System.nanoTime();
            String path =
                cluster
                    .triggerSavepoint(job, "file://" + dir + "/savepoints", false,
                        SavepointFormatType.CANONICAL)
                    .get(OPERATION_TIMEOUT_S, TimeUnit.SECONDS);
            answer("savepoint " + path + " " + millisSince(t0));
          }
          case "stop" -> {
            long t0 = System.nanoTime();
            String path =
                cluster
                    .stopWithSavepoint(job, "file://" + dir + "/savepoints", false,
                        SavepointFormatType.CANONICAL)
                    .get(OPERATION_TIMEOUT_S, TimeUnit.SECONDS);
            answer("stopped " + path + " " + millisSince(t0));
          }
          case "quit" -> {
            answer("bye");
            return;
          }
          default -> answer("error unknown command " + words[0]);
        }
      } catch (Exception e) {
        Throwable root = e;
        while (root.getCause() != null) {
          root = root.getCause();
        }
        answer("error " + root.toString().replace('\n', ' '));
      }
    }
  }

  /** Waits until every task of the job runs, as weir's `running` means every partition owned. */
  private static void waitRunning(MiniCluster cluster, JobID job) throws Exception {
    long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(OPERATION_TIMEOUT_S);
    while (System.nanoTime() < deadline) {
      JobStatus status = cluster.getJobStatus(job).get(OPERATION_TIMEOUT_S, TimeUnit.SECONDS);
      if (status == JobStatus.RUNNING) {
        return;
      }
      if (status.isGloballyTerminalState()) {
        throw new IllegalStateException("the job ended as " + status);
      }
      Thread.sleep(STATUS_POLL_MS);
    }
    throw new IllegalStateException("the job did not run within the timeout");
  }

  private static long millisSince(long t0) {
    return TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - t0);
  }

  private static void answer(String line) {
    System.out.println(line);
    System.out.flush();
  }

  private static Map<String, String> parseArgs(String[] argv) {
    Map<String, String> args = new HashMap<>();
    for (int i = 0; i + 1 < argv.length; i += 2) {
      if (!argv[i].startsWith("--")) {
        throw new IllegalArgumentException("expected --name value pairs, got " + argv[i]);
      }
      args.put(argv[i].substring(2), argv[i + 1]);
    }
    for (String required : new String[] {"bootstrap", "source", "sink", "dir", "out-of-orderness-ms"}) {
      if (!args.containsKey(required)) {
        throw new IllegalArgumentException("missing --" + required);
      }
    }
    return args;
  }
}
