package dev.weir.bench;

import java.nio.charset.StandardCharsets;
import java.time.Duration;
import org.apache.flink.api.common.eventtime.WatermarkStrategy;
import org.apache.flink.api.common.functions.AggregateFunction;
import org.apache.flink.api.common.functions.MapFunction;
import org.apache.flink.api.common.serialization.AbstractDeserializationSchema;
import org.apache.flink.api.common.serialization.SimpleStringSchema;
import org.apache.flink.connector.base.DeliveryGuarantee;
import org.apache.flink.connector.kafka.sink.KafkaRecordSerializationSchema;
import org.apache.flink.connector.kafka.sink.KafkaSink;
import org.apache.flink.connector.kafka.source.KafkaSource;
import org.apache.flink.connector.kafka.source.enumerator.initializer.OffsetsInitializer;
import org.apache.flink.streaming.api.CheckpointingMode;
import org.apache.flink.streaming.api.environment.StreamExecutionEnvironment;
import org.apache.flink.streaming.api.functions.windowing.ProcessWindowFunction;
import org.apache.flink.streaming.api.graph.StreamGraph;
import org.apache.flink.streaming.api.windowing.assigners.TumblingEventTimeWindows;
import org.apache.flink.streaming.api.windowing.windows.TimeWindow;
import org.apache.flink.util.Collector;

/**
 * The bench's velocity job, the same as weir's spec: read JSON events {"card", "ts"} from the
 * source topic, key by card, count per key in event-time tumbling windows (watermark = the
 * largest event time of the partition minus the out-of-orderness bound), add the version
 * field "v", and write each window's result to the sink topic exactly once.
 */
final class VelocityJob {
  private VelocityJob() {}

  /** What one build of the job needs to know. */
  record Settings(
      String bootstrap,
      String source,
      String sink,
      int parallelism,
      long windowMs,
      long outOfOrdernessMs,
      long checkpointIntervalMs,
      String transactionalIdPrefix) {}

  /** One source event. Public fields: Flink treats it as a POJO (no Kryo). */
  public static final class Event {
    public String card;
    public long ts;

    public Event() {}
  }

  /**
   * Parses the generator's fixed shape {"card":"...","ts":N} by hand: the benchmark times the
   * life cycle, not JSON decoding, and the generator writes nothing else.
   */
  static final class EventSchema extends AbstractDeserializationSchema<Event> {
    @Override
    public Event deserialize(byte[] message) {
      String s = new String(message, StandardCharsets.UTF_8);
      Event e = new Event();
      int c = s.indexOf("\"card\":\"") + 8;
      e.card = s.substring(c, s.indexOf('"', c));
      int t = s.indexOf("\"ts\":") + 5;
      int end = t;
      while (end < s.length() && Character.isDigit(s.charAt(end))) {
        end++;
      }
      e.ts = Long.parseLong(s.substring(t, end));
      return e;
    }
  }

  /** count() as weir's aggregate computes it. */
  static final class Count implements AggregateFunction<Event, Long, Long> {
    @Override
    public Long createAccumulator() {
      return 0L;
    }

    @Override
    public Long add(Event value, Long acc) {
      return acc + 1;
    }

    @Override
    public Long getResult(Long acc) {
      return acc;
    }

    @Override
    public Long merge(Long a, Long b) {
      return a + b;
    }
  }

  /** The window's result in weir's shape {"key", "window_start", "window_end", "n"}. */
  static final class Emit extends ProcessWindowFunction<Long, String, String, TimeWindow> {
    @Override
    public void process(String key, Context ctx, Iterable<Long> counts, Collector<String> out) {
      long n = counts.iterator().next();
      out.collect(
          "{\"key\":\""
              + key
              + "\",\"window_start\":"
              + ctx.window().getStart()
              + ",\"window_end\":"
              + ctx.window().getEnd()
              + ",\"n\":"
              + n);
    }
  }

  /** The stateless stage an upgrade changes: closes the object with "v": version. */
  static final class AddVersion implements MapFunction<String, String> {
    private final int version;

    AddVersion(int version) {
      this.version = version;
    }

    @Override
    public String map(String partial) {
      return partial + ",\"v\":" + version + "}";
    }
  }

  /** The job's graph at `version`; stable uids carry the window's state across versions. */
  static StreamGraph build(StreamExecutionEnvironment env, Settings s, int version) {
    env.setParallelism(s.parallelism());
    env.enableCheckpointing(s.checkpointIntervalMs(), CheckpointingMode.EXACTLY_ONCE);
    // Watermarks as often as a checkpoint interval allows weir's to move: per batch.
    env.getConfig().setAutoWatermarkInterval(50);
    KafkaSource<Event> source =
        KafkaSource.<Event>builder()
            .setBootstrapServers(s.bootstrap())
            .setTopics(s.source())
            .setGroupId("flink-lifecycle-bench")
            .setStartingOffsets(OffsetsInitializer.earliest())
            .setValueOnlyDeserializer(new EventSchema())
            .build();
    WatermarkStrategy<Event> watermarks =
        WatermarkStrategy.<Event>forBoundedOutOfOrderness(
                Duration.ofMillis(s.outOfOrdernessMs()))
            .withTimestampAssigner((e, recordTs) -> e.ts);
    KafkaSink<String> sink =
        KafkaSink.<String>builder()
            .setBootstrapServers(s.bootstrap())
            .setRecordSerializer(
                KafkaRecordSerializationSchema.builder()
                    .setTopic(s.sink())
                    .setValueSerializationSchema(new SimpleStringSchema())
                    .build())
            .setDeliveryGuarantee(DeliveryGuarantee.EXACTLY_ONCE)
            .setTransactionalIdPrefix(s.transactionalIdPrefix())
            // Within the broker's transaction.max.timeout.ms (Flink's default of 1 h is not).
            .setProperty("transaction.timeout.ms", "60000")
            .build();
    env.fromSource(source, watermarks, "source")
        .uid("source")
        .keyBy(e -> e.card)
        .window(TumblingEventTimeWindows.of(Duration.ofMillis(s.windowMs())))
        .aggregate(new Count(), new Emit())
        .uid("velocity")
        .map(new AddVersion(version))
        .uid("version")
        .sinkTo(sink)
        .uid("sink");
    StreamGraph graph = env.getStreamGraph();
    graph.setJobName("velocity-v" + version);
    return graph;
  }
}
